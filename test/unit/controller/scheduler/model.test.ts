// Placement capacity math: (total − reserved) × allocation_ratio, and min/max/step checks.
import t from 'tap'
import { allocationProblem, capacity, freeOf } from '../../../../controller/scheduler/model.js'
import { fakeHost } from './fake-host.js'

const inv = (o: Partial<{ total: number; reserved: number; minUnit: number; maxUnit: number; stepSize: number; allocationRatio: number }> = {}) => ({
  total: 8, reserved: 0, minUnit: 1, maxUnit: 8, stepSize: 1, allocationRatio: 1, ...o,
})

t.test('capacity = (total − reserved) × allocation_ratio', async (t) => {
  t.equal(capacity(inv({ total: 8, allocationRatio: 4 })), 32, 'VCPU 8 at the default 4.0 → 32')
  t.equal(capacity(inv({ total: 16384, reserved: 512, allocationRatio: 1 })), 15872, 'RAM minus reserved_host_memory_mb')
  t.equal(capacity(inv({ total: 100, reserved: 10, allocationRatio: 1.5 })), 135)
  t.equal(capacity(inv({ total: 4, reserved: 4, allocationRatio: 16 })), 0, 'everything reserved')
})

t.test('allocationProblem: capacity and unit rules', async (t) => {
  const i = inv({ total: 8, allocationRatio: 4, maxUnit: 8 })
  t.equal(allocationProblem('VCPU', i, 24, 8), undefined, 'exactly fills 32')
  t.match(allocationProblem('VCPU', i, 25, 8), /VCPU: 25 of 32 used, 8 more requested/)
  t.match(allocationProblem('VCPU', i, 0, 9), /above max_unit 8/, 'one consumer cannot exceed max_unit')
  t.match(allocationProblem('VCPU', inv({ minUnit: 2 }), 0, 1), /below min_unit 2/)
  t.match(allocationProblem('VCPU', inv({ stepSize: 2 }), 0, 3), /not a multiple of step_size 2/)
  t.match(allocationProblem('VGPU', undefined, 0, 1), /no VGPU inventory/)
})

t.test('freeOf uses ratios and usage', async (t) => {
  const h = fakeHost({ vcpus: 4, memoryMb: 4096, reserved: { MEMORY_MB: 512 }, used: { VCPU: 6, MEMORY_MB: 1024 } })
  t.equal(freeOf(h, 'VCPU'), 10, '4 × 4.0 − 6')
  t.equal(freeOf(h, 'MEMORY_MB'), 2560, '4096 − 512 − 1024')
  t.equal(freeOf(h, 'VGPU'), 0)
})

/**
 * A quick subset of Tempest 33 (Debian's `tempest`) against a cloud this test
 * starts (fake virt driver): discovery, tokens and the identity resources,
 * image v2, networks and security groups, flavors and keypairs, compute
 * versions and quotas, console output and an admin's reset state, through the
 * REST APIs with Tempest's own clients and response schemas. The full run is
 * `npm run test:tempest`. Skips, with the reason, when Tempest is not installed.
 */
import t from 'tap'
import { existsSync, rmSync } from 'node:fs'
import { startTempestCloud } from '../../tempest/cloud.js'

/** What this subset runs: what Strato is expected to pass, less test/tempest/exclude.txt. */
export const QUICK_SUBSET = [
  'tempest\\.api\\.identity\\.v3\\.',
  'tempest\\.api\\.identity\\.admin\\.v3\\.test_(domains|projects|users|roles|tokens)\\.',
  'tempest\\.api\\.image\\.v2\\.test_images\\.',
  // Less four tests whose only cost is Tempest's subnet delete, which sleeps 10 s before each; what they
  // check (bulk subnets, fixed_ips=ip_address filter, a port with no security groups, a port's address
  // in the allocation pool) is in test/functional/rest/network.test.ts; npm run test:tempest runs them.
  'tempest\\.api\\.network\\.test_(networks|security_groups|ports)\\.(?!BulkNetworkOpsTest\\.test_bulk_create_delete_subnet\\b|PortsTestJSON\\.test_(port_list_filter_by_ip|create_port_in_allowed_allocation_pools|create_port_with_no_securitygroups)\\b)',
  'tempest\\.api\\.compute\\.(flavors|keypairs)\\.',
  'tempest\\.api\\.compute\\.test_(versions|quotas)\\.',
  'tempest\\.api\\.image\\.v2\\.test_images_negative\\.',
  'tempest\\.api\\.compute\\.admin\\.test_delete_server\\.DeleteServersAdminTestJSON\\.test_delete_server_while_in_error_state',
  'tempest\\.api\\.compute\\.servers\\.test_server_actions\\.ServerActionsTestJSON\\.test_get_console_output',
].map((r) => `^${r}`).join('|')

if (!existsSync('/usr/bin/tempest')) {
  t.plan(0, 'tempest is not installed (npm run setup installs it)')
} else {
  t.test('Tempest quick subset passes', async (t) => {
    const tc = await startTempestCloud({ driver: 'fake' })
    // The workspace (tempest.conf, logs) goes too: npm run test:tempest is the run that keeps it to read.
    t.teardown(async () => {
      await tc.close()
      rmSync(tc.dir, { recursive: true, force: true })
    })
    const r = await tc.run(QUICK_SUBSET, { concurrency: 2 })
    t.comment(`tempest quick subset: ${r.passed} passed, ${r.skipped} skipped, ${r.failed} failed`)
    t.ok(r.passed >= 100, `a real run: ${r.passed} tests passed`)
    t.same(r.failures, [], 'no Tempest test failed')
    if (r.failed > 0) t.comment(r.output.split('\n').filter((l) => /FAILED|Details|Error/.test(l)).slice(0, 40).join('\n'))
    t.equal(r.failed, 0)
  })
}

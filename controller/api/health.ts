/** grpc.health.v1: SERVING while the controller runs, NOT_SERVING once it stops. */
import type { ServerUnaryCall, ServerWritableStream, UntypedServiceImplementation, sendUnaryData } from '@grpc/grpc-js'
import { status } from '@grpc/grpc-js'
import { HealthCheckResponse_ServingStatus as Serving, type HealthCheckRequest, type HealthCheckResponse } from '../../proto/gen/grpc/health/v1/health.js'

export class HealthState {
  private serving = false
  private readonly watchers = new Set<() => void>()
  constructor(private readonly services: ReadonlySet<string>) {}

  set(serving: boolean): void {
    this.serving = serving
    for (const w of this.watchers) w()
  }

  statusOf(service: string): Serving | undefined {
    if (service !== '' && !this.services.has(service)) return undefined
    return this.serving ? Serving.SERVING : Serving.NOT_SERVING
  }

  implementation(): UntypedServiceImplementation {
    return {
      check: (call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, cb: sendUnaryData<HealthCheckResponse>) => {
        const s = this.statusOf(call.request.service ?? "")
        if (s === undefined) cb({ code: status.NOT_FOUND, details: `unknown service '${call.request.service}'` })
        else cb(null, { status: s })
      },
      watch: (call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
        let last: Serving | undefined
        const send = () => {
          const s = this.statusOf(call.request.service ?? "") ?? Serving.SERVICE_UNKNOWN
          if (s !== last) call.write({ status: (last = s) })
        }
        this.watchers.add(send)
        call.on('cancelled', () => this.watchers.delete(send))
        call.on('close', () => this.watchers.delete(send))
        send()
      },
    }
  }
}

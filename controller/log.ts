/** Structured logging (pino). Context (request id, project, instance, host) goes in child loggers. */
import { pino, type Logger } from 'pino'

export type { Logger }

export function createLogger(opts: { level: string; pretty: boolean; name: string }): Logger {
  if (opts.pretty) {
    return pino({
      name: opts.name,
      level: opts.level,
      transport: { target: 'pino-pretty', options: { colorize: process.stdout.isTTY, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } },
    })
  }
  return pino({ name: opts.name, level: opts.level })
}

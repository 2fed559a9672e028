/**
 * The load process of bench:api: N keep-alive HTTP/1.1 connections, each
 * sending one GET after another (the next once the whole answer is in), for
 * a number of seconds, with `X-Auth-Token`. It speaks the protocol on plain
 * sockets and only counts the answer's bytes (Content-Length), so its own
 * CPU per request stays small beside the server's: the figure is the
 * server's. Every answer must be 200; anything else ends the run with the
 * status and the start of the body.
 *
 * usage: http_load.ts URL TOKEN SECONDS CONNECTIONS  → prints one JSON line
 * {"rps": …, "requests": …, "bytesPerAnswer": …}
 */
import { connect, type Socket } from 'node:net'

const [url, token, secondsArg, connectionsArg] = process.argv.slice(2)
if (!url || !token || !secondsArg || !connectionsArg) {
  console.error('usage: http_load.ts URL TOKEN SECONDS CONNECTIONS')
  process.exit(2)
}
const target = new URL(url)
if (target.protocol !== 'http:') throw new Error(`http_load speaks plain HTTP only, not ${target.protocol}`)
const request = Buffer.from(`GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\nX-Auth-Token: ${token}\r\nAccept: application/json\r\nConnection: keep-alive\r\n\r\n`)
const HEADER_END = Buffer.from('\r\n\r\n')

let requests = 0
let bytes = 0

/** One connection: sends, reads one answer whole, sends again, until `end`. */
function run(end: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock: Socket = connect(Number(target.port), target.hostname)
    sock.setNoDelay(true)
    let buf: Buffer = Buffer.alloc(0)
    let bodyLeft = -1
    const send = () => {
      if (Date.now() >= end) {
        sock.end()
        resolve()
        return
      }
      sock.write(request)
    }
    sock.on('connect', send)
    sock.on('error', reject)
    sock.on('data', (chunk: Buffer) => {
      if (bodyLeft >= 0) {
        bodyLeft -= chunk.length
      } else {
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk
        const at = buf.indexOf(HEADER_END)
        if (at < 0) return
        const head = buf.subarray(0, at).toString('latin1')
        const status = Number(head.slice(9, 12))
        const length = /\r\ncontent-length: *(\d+)/i.exec(head)
        if (!length) return reject(new Error(`an answer without Content-Length: ${head.slice(0, 200)}`))
        bodyLeft = Number(length[1]) - (buf.length - at - 4)
        if (status !== 200) {
          sock.destroy()
          return reject(new Error(`GET ${url} answered ${status}: ${buf.subarray(at + 4, at + 300).toString()}`))
        }
        bytes += Number(length[1])
        buf = Buffer.alloc(0)
      }
      if (bodyLeft === 0) {
        bodyLeft = -1
        requests++
        send()
      } else if (bodyLeft < 0) {
        sock.destroy()
        reject(new Error('more bytes than Content-Length said: pipelining is not used, so the server sent garbage'))
      }
    })
  })
}

const seconds = Number(secondsArg)
const started = performance.now()
await Promise.all(Array.from({ length: Number(connectionsArg) }, () => run(Date.now() + seconds * 1000)))
const elapsed = (performance.now() - started) / 1000
console.log(JSON.stringify({ rps: requests / elapsed, requests, bytesPerAnswer: requests ? Math.round(bytes / requests) : 0 }))

#!/usr/bin/python3
"""Load generator for bench:identity and bench:api: Debian's grpcio (C core), asyncio, N calls in
flight of strato.identity.v1.Domains/GetDomain {id: "default"} (or METHOD with the request
REQUEST_HEX, e.g. /strato.compute.v1.Servers/ListServers and "" for an empty request) with
x-auth-token. The request is pre-encoded so the client spends its core on gRPC, not protobuf.
usage: rpc_load.py HOST:PORT TOKEN SECONDS CONCURRENCY [CA_FILE [METHOD REQUEST_HEX]]  -> prints calls per second
With CA_FILE the channel is TLS, verified against it (give "" for plaintext).
"""
import asyncio, sys, time
import grpc

addr, token, seconds, concurrency = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
ca_file = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else None

def channel():
    if not ca_file:
        return grpc.aio.insecure_channel(addr)
    with open(ca_file, 'rb') as f:
        return grpc.aio.secure_channel(addr, grpc.ssl_channel_credentials(root_certificates=f.read()))
REQUEST = b'\x0a\x07default'  # GetDomainRequest { id: "default" }
METHOD = '/strato.identity.v1.Domains/GetDomain'
if len(sys.argv) > 7:
    METHOD, REQUEST = sys.argv[6], bytes.fromhex(sys.argv[7])

async def main():
    async with channel() as ch:
        call = ch.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        md = (('x-auth-token', token),)
        reply = await call(REQUEST, metadata=md)
        assert b'Default' in reply if METHOD.endswith('/GetDomain') else len(reply) > 0, reply
        done = 0
        end = time.monotonic() + seconds
        async def worker():
            nonlocal done
            while time.monotonic() < end:
                await call(REQUEST, metadata=md)
                done += 1
        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        print(done / (time.monotonic() - t0))

asyncio.run(main())

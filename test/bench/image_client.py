#!/usr/bin/python3
"""Client side of bench:catalog with Debian's grpcio (C core), in its own process:
uploads FILE to IMAGE_ID in 1 MiB messages (size announced), then downloads it
and checks the MD5. Messages are encoded by hand (two protobuf fields), so the
client spends its core on gRPC, not on protobuf.
usage: image_client.py HOST:PORT TOKEN IMAGE_ID FILE [CA_FILE [MODE]] -> JSON {uploadMs, downloadMs, md5, ...}
With CA_FILE the channel is TLS, verified against it. MODE is both (the
default), upload or download (of an image uploaded before): one direction per
process lets the caller account CPU to each direction.
"""
import hashlib, json, os, sys, time
import grpc

addr, token, image_id, path = sys.argv[1:5]
ca_file = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else None
mode = sys.argv[6] if len(sys.argv) > 6 else 'both'
size = os.path.getsize(path)
CHUNK = 1024 * 1024

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

def field(num, wire, payload):
    return varint(num << 3 | wire) + payload

def first_message():
    iid = image_id.encode()
    return field(1, 2, varint(len(iid)) + iid) + field(3, 0, varint(size))

def messages():
    yield first_message()
    with open(path, 'rb', buffering=0) as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                return
            yield field(2, 2, varint(len(chunk)) + chunk)

opts = [('grpc.max_receive_message_length', 64 << 20), ('grpc.max_send_message_length', 64 << 20)]
def channel():
    if not ca_file:
        return grpc.insecure_channel(addr, options=opts)
    with open(ca_file, 'rb') as f:
        return grpc.secure_channel(addr, grpc.ssl_channel_credentials(root_certificates=f.read()), options=opts)

def upload(ch, md):
    up = ch.stream_unary('/strato.image.v1.Images/UploadImage', request_serializer=None, response_deserializer=None)
    c0 = time.process_time()
    t0 = time.perf_counter()
    up(messages(), metadata=md, timeout=600)
    return (time.perf_counter() - t0) * 1000, time.process_time() - c0

def download(ch, md):
    down = ch.unary_stream('/strato.image.v1.Images/DownloadImage', request_serializer=None, response_deserializer=None)
    iid = image_id.encode()
    c0 = time.process_time()
    t0 = time.perf_counter()
    h = hashlib.md5()
    got = 0
    for raw in down(field(1, 2, varint(len(iid)) + iid), metadata=md, timeout=600):
        # ImageChunk { bytes data = 1 }: tag, length varint, then the bytes.
        i = 1
        shift = n = 0
        while True:
            b = raw[i]; i += 1
            n |= (b & 0x7f) << shift; shift += 7
            if not b & 0x80:
                break
        view = memoryview(raw)[i:i + n]
        h.update(view)
        got += n
    ms = (time.perf_counter() - t0) * 1000
    cpu = time.process_time() - c0
    if got != size:
        sys.exit('downloaded %d of %d bytes' % (got, size))
    return ms, cpu, h.hexdigest()

out = {}
with channel() as ch:
    md = (('x-auth-token', token),)
    if mode in ('both', 'upload'):
        out['uploadMs'], out['uploadCpuS'] = upload(ch, md)
    if mode in ('both', 'download'):
        out['downloadMs'], out['downloadCpuS'], out['md5'] = download(ch, md)
print(json.dumps(out))

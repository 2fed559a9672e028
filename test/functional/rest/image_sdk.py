"""openstacksdk against Strato's Image v2 REST API: upload and download byte for
byte, list, update, delete, and version discovery through the unversioned
endpoint. Run by image-clients.test.ts; prints one JSON object.

usage: image_sdk.py <image endpoint (…/image)> <token> <file>
"""
import hashlib
import json
import sys

import openstack
from keystoneauth1 import discover, session

endpoint, token, path = sys.argv[1:4]
data = open(path, 'rb').read()
out = {}

# What keystoneauth finds behind the catalog's unversioned endpoint.
d = discover.Discover(session.Session(), endpoint)
out['discovered'] = sorted({v['url'] for v in d.version_data()})
out['versions'] = sorted('%d.%d' % v['version'] for v in d.version_data())

conn = openstack.connect(auth_type='admin_token', auth={'endpoint': endpoint + '/v2', 'token': token})
img = conn.image.create_image(name='sdk-image', filename=path, disk_format='raw', container_format='bare',
                              meta={'os_distro': 'debian'}, validate_checksum=True, wait=True)
got = conn.image.get_image(img.id)
out['status'] = got.status
out['checksum_ok'] = got.checksum == hashlib.md5(data).hexdigest()
out['hash_ok'] = got.hash_algo == 'sha512' and got.hash_value == hashlib.sha512(data).hexdigest()
out['size'] = got.size
out['os_distro'] = got.os_distro
out['md5_property'] = got.properties.get('owner_specified.openstack.md5')
resp = conn.image.download_image(got)
out['download_exact'] = resp.content == data
out['download_md5'] = resp.headers.get('content-md5')
conn.image.download_image(got, output=path + '.out')
out['output_exact'] = open(path + '.out', 'rb').read() == data
conn.image.update_image(got, min_ram=128, hw_disk_bus='virtio')
upd = conn.image.get_image(img.id)
out['updated'] = [upd.min_ram, upd.hw_disk_bus]
out['listed'] = [i.name for i in conn.image.images()]
out['found'] = conn.image.find_image('sdk-image').id == img.id
conn.image.delete_image(got)
out['after_delete'] = conn.image.find_image('sdk-image') is None
print(json.dumps(out))

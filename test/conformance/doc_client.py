#!/usr/bin/env python3
"""A cryptod client written from docs/protocol.md alone (standard library only).

It speaks the frames of §2 and the CBOR subset of §3 with its own encoder and
decoder, and checks that the daemon does what the document says: the
handshake (§4), the operations used below (§6), the managed-key description
(§6.11) and the error frames (§7). Each check prints one line; the exit status
is the number of failed checks (0: document and daemon agree).

Usage: doc_client.py SOCKET_PATH
"""
import os
import socket
import struct
import sys

REQUEST, RESPONSE, ERROR = 1, 2, 3
OP = {
    'HELLO': 0x0001, 'PING': 0x0002, 'STATUS': 0x0003, 'DIGEST': 0x0010,
    'GENERATE_KEY': 0x0020, 'RELEASE': 0x0023, 'ENCRYPT': 0x0024, 'DECRYPT': 0x0025,
    'SIGN': 0x0026, 'CIPHER_CREATE': 0x0044, 'CIPHER_UPDATE': 0x0045, 'CIPHER_FINAL': 0x0046,
    'MANAGED_ENCRYPT': 0x0100, 'MANAGED_DECRYPT': 0x0101,
    'KEY_CREATE': 0x0110, 'KEY_LIST': 0x0113, 'KEY_DESCRIBE': 0x0114,
}


# ── CBOR (§3) ────────────────────────────────────────────────────────────

class Float:
    """A value to send as a CBOR float64 even when it is whole (1.0)."""

    def __init__(self, v):
        self.v = float(v)


def _head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    if n < 0x100:
        return bytes([major << 5 | 24, n])
    if n < 0x10000:
        return bytes([major << 5 | 25]) + struct.pack('>H', n)
    if n < 0x100000000:
        return bytes([major << 5 | 26]) + struct.pack('>I', n)
    return bytes([major << 5 | 27]) + struct.pack('>Q', n)


def enc(v):
    if v is None:
        return b'\xf6'
    if v is True:
        return b'\xf5'
    if v is False:
        return b'\xf4'
    if isinstance(v, Float):
        return b'\xfb' + struct.pack('>d', v.v)
    if isinstance(v, int):
        return _head(0, v) if v >= 0 else _head(1, -1 - v)
    if isinstance(v, float):
        return b'\xfb' + struct.pack('>d', v)
    if isinstance(v, (bytes, bytearray)):
        return _head(2, len(v)) + bytes(v)
    if isinstance(v, str):
        b = v.encode('utf-8')
        return _head(3, len(b)) + b
    if isinstance(v, list):
        return _head(4, len(v)) + b''.join(enc(x) for x in v)
    if isinstance(v, dict):
        return _head(5, len(v)) + b''.join(enc(k) + enc(x) for k, x in v.items())
    raise TypeError(type(v))


def _half(h):
    s = -1.0 if h & 0x8000 else 1.0
    e = (h >> 10) & 0x1f
    f = h & 0x3ff
    if e == 0:
        return s * 2 ** -14 * (f / 1024)
    if e == 31:
        return float('nan') if f else s * float('inf')
    return s * 2 ** (e - 15) * (1 + f / 1024)


def dec(b):
    v, pos = _dec(b, 0, 0)
    if pos != len(b):
        raise ValueError('trailing bytes')
    return v


def _len(b, pos, info):
    if info < 24:
        return info, pos
    size = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
    if size is None:
        raise ValueError('indefinite or reserved length')
    return int.from_bytes(b[pos:pos + size], 'big'), pos + size


def _dec(b, pos, depth):
    ib = b[pos]
    pos += 1
    major, info = ib >> 5, ib & 0x1f
    if major == 7:
        if info == 20:
            return False, pos
        if info == 21:
            return True, pos
        if info == 22:
            return None, pos
        if info == 25:
            return _half(struct.unpack('>H', b[pos:pos + 2])[0]), pos + 2
        if info == 26:
            return struct.unpack('>f', b[pos:pos + 4])[0], pos + 4
        if info == 27:
            return struct.unpack('>d', b[pos:pos + 8])[0], pos + 8
        raise ValueError('simple value %d' % info)
    n, pos = _len(b, pos, info)
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if major == 2:
        return bytes(b[pos:pos + n]), pos + n
    if major == 3:
        return b[pos:pos + n].decode('utf-8'), pos + n
    if major == 4:
        out = []
        for _ in range(n):
            x, pos = _dec(b, pos, depth + 1)
            out.append(x)
        return out, pos
    if major == 5:
        out = {}
        for _ in range(n):
            k, pos = _dec(b, pos, depth + 1)
            if not isinstance(k, str) or k in out:
                raise ValueError('bad map key')
            out[k], pos = _dec(b, pos, depth + 1)
        return out, pos
    raise ValueError('major type %d' % major)


# ── frames (§2) ──────────────────────────────────────────────────────────

NOTHING = object()


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.s.connect(path)
        self.next_id = 1
        self.buf = b''

    def send_raw(self, rid, op, payload_bytes):
        self.s.sendall(struct.pack('>IBIH', 7 + len(payload_bytes), REQUEST, rid, op) + payload_bytes)

    def read_frame(self):
        while True:
            if len(self.buf) >= 4:
                (length,) = struct.unpack('>I', self.buf[:4])
                if len(self.buf) >= 4 + length:
                    kind, rid, op = struct.unpack('>BIH', self.buf[4:11])
                    payload = self.buf[11:4 + length]
                    self.buf = self.buf[4 + length:]
                    return kind, rid, op, payload
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError('closed by the daemon')
            self.buf += chunk

    def call(self, op, args=NOTHING, rid=None, raw=None):
        """Send one request; return (kind, id, op, raw payload bytes)."""
        if rid is None:
            rid = self.next_id
            self.next_id += 1
        payload = raw if raw is not None else (b'' if args is NOTHING else enc(args))
        self.send_raw(rid, OP[op] if isinstance(op, str) else op, payload)
        return self.read_frame()


# ── checks ───────────────────────────────────────────────────────────────

failures = 0


def check(name, cond, info=''):
    global failures
    if cond:
        print('ok   ' + name)
    else:
        failures += 1
        print('FAIL ' + name + ('  -- ' + str(info) if info else ''))


def result(frame):
    kind, _, _, payload = frame
    if kind != RESPONSE:
        raise AssertionError('expected a RESPONSE, got kind %d: %r' % (kind, dec(payload) if payload else None))
    return dec(payload)


def error_of(frame):
    kind, _, _, payload = frame
    return dec(payload) if kind == ERROR else None


def refused(name, frame, code, field=None):
    e = error_of(frame)
    ok = e is not None and e.get('code') == code
    if ok and field is not None:
        ok = isinstance(e.get('detail'), dict) and e['detail'].get('field') == field
    check(name, ok, e if e is not None else 'got a reply')


def main(path):
    # §4: HELLO without a payload is refused; with { version: 1 } it binds the connection.
    c = Conn(path)
    refused('HELLO with an empty payload is INVALID_ARGUMENT (its arguments are a map with version)', c.call('HELLO'), 'CRYPTOD_ERR_INVALID_ARGUMENT')
    refused('HELLO with a map without version names the field', c.call('HELLO', {'client': 'x'}), 'CRYPTOD_ERR_INVALID_ARGUMENT', 'version')
    hello = result(c.call('HELLO', {'version': 1, 'client': 'docclient'}))
    check('HELLO reply: version 1, daemon "cryptod", text clientId, integer limits',
          hello.get('version') == 1 and hello.get('daemon') == 'cryptod' and isinstance(hello.get('clientId'), str)
          and all(isinstance(v, int) for v in hello.get('limits', {}).values()) and 'maxFrame' in hello.get('limits', {}), hello)

    # §2: every reply payload is exactly one CBOR value; PING with no payload answers null.
    kind, rid, op, payload = c.call('PING')
    check('PING without a payload: a RESPONSE whose payload is CBOR null (f6)', kind == RESPONSE and payload == b'\xf6', payload.hex())
    check('PING echoes its payload', result(c.call('PING', {'a': [1, b'x', 'y']})) == {'a': [1, b'x', 'y']})
    st = result(c.call('STATUS'))
    check('STATUS: daemon, nodes, connections, clients', isinstance(st.get('daemon'), dict) and isinstance(st.get('nodes'), int)
          and isinstance(st.get('clients'), list), st)
    check('STATUS with an empty map works too', isinstance(result(c.call('STATUS', {})), dict))

    # §6.3 DIGEST, and the worked example of §10.
    d = result(c.call('DIGEST', {'algorithm': 'SHA-256', 'data': b'abc'}))
    check('DIGEST SHA-256("abc") is the FIPS 180-2 vector', d.hex() == 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', d.hex())

    # §6.4 + §6.5: generate an AES-GCM key, encrypt, decrypt.
    key = result(c.call('GENERATE_KEY', {'algorithm': {'name': 'AES-GCM', 'length': 256}, 'extractable': False, 'usages': ['encrypt', 'decrypt']}))
    check('GENERATE_KEY: a key description (§6.1)', isinstance(key.get('handle'), str) and len(key['handle']) == 22 and key.get('type') == 'secret'
          and key.get('extractable') is False and key.get('algorithm') == {'name': 'AES-GCM', 'length': 256}
          and key.get('usages') == ['encrypt', 'decrypt'], key)
    h = key['handle']
    iv = os.urandom(12)
    ct = result(c.call('ENCRYPT', {'algorithm': {'name': 'AES-GCM', 'iv': iv, 'additionalData': b'hdr'}, 'key': h, 'data': b'hello'}))
    check('ENCRYPT: ciphertext || 16-byte tag', isinstance(ct, bytes) and len(ct) == 5 + 16)
    pt = result(c.call('DECRYPT', {'algorithm': {'name': 'AES-GCM', 'iv': iv, 'additionalData': b'hdr'}, 'key': h, 'data': ct}))
    check('DECRYPT gives the plaintext back', pt == b'hello')

    # §6.9: a CIPHER_UPDATE that completes no segment replies an empty byte string (40), not an empty payload.
    s = result(c.call('CIPHER_CREATE', {'key': h, 'mode': 'encrypt', 'algorithm': {'name': 'AES-GCM'}}))
    check('CIPHER_CREATE encrypt: handle, 49-byte header, segmentSize', isinstance(s.get('handle'), str) and len(s.get('header', b'')) == 49
          and s.get('segmentSize') == 65536, s)
    kind, _, _, payload = c.call('CIPHER_UPDATE', {'handle': s['handle'], 'data': b'x' * 10})
    check('CIPHER_UPDATE with no completed segment: payload is an empty byte string (40)', kind == RESPONSE and payload == b'\x40', payload.hex())
    fin = result(c.call('CIPHER_FINAL', {'handle': s['handle']}))
    check('CIPHER_FINAL: the last segment (10 bytes + tag)', isinstance(fin, bytes) and len(fin) == 10 + 16)

    # §6.11: a managed key, created, used, described.
    name = 'doc-%s' % os.urandom(4).hex()
    desc = result(c.call('KEY_CREATE', {'name': name, 'definition': {'type': 'aes256-gcm', 'rotationPeriod': '30d'}}))
    check_description(desc, name)
    enc_r = result(c.call('MANAGED_ENCRYPT', {'key': name, 'plaintext': b'secret', 'aad': b'a'}))
    check('MANAGED_ENCRYPT: { ciphertext: bytes, version: uint }', isinstance(enc_r.get('ciphertext'), bytes) and isinstance(enc_r.get('version'), int), enc_r)
    dec_r = result(c.call('MANAGED_DECRYPT', {'key': name, 'ciphertext': enc_r['ciphertext'], 'aad': b'a'}))
    check('MANAGED_DECRYPT gives the plaintext and the version', dec_r == {'plaintext': b'secret', 'version': enc_r['version']}, dec_r)
    batch = result(c.call('MANAGED_ENCRYPT', {'key': name, 'items': [{'plaintext': b'1'}, {'plaintext': b'2', 'aad': b'x'}]}))
    check('MANAGED_ENCRYPT batch: one result per item', isinstance(batch.get('items'), list) and len(batch['items']) == 2
          and all(isinstance(i.get('ciphertext'), bytes) for i in batch['items']), batch)
    check_description(result(c.call('KEY_DESCRIBE', {'name': name})), name, 'KEY_DESCRIBE')
    listed = result(c.call('KEY_LIST'))
    check('KEY_LIST without a payload lists the key', any(k.get('name') == name for k in listed.get('keys', [])))

    # The decisions of docs/protocol.md §2, §3, §6.1, §7.
    kind, rid, op, payload = c.call('PING', {}, rid=0)
    e = dec(payload) if payload else None
    check('request id 0 is refused: ERROR, id 0, the op echoed, BAD_FRAME with detail.field "requestId"',
          kind == ERROR and rid == 0 and op == OP['PING'] and e.get('code') == 'CRYPTOD_ERR_BAD_FRAME' and e.get('detail', {}).get('field') == 'requestId', e)
    check('the connection serves requests after an id-0 refusal', result(c.call('PING', 7)) == 7)
    refused('a float where an integer is required (GENERATE_KEY length 256.0)',
            c.call('GENERATE_KEY', {'algorithm': {'name': 'AES-GCM', 'length': Float(256)}, 'extractable': False, 'usages': ['encrypt']}),
            'CRYPTOD_ERR_INVALID_ARGUMENT', 'algorithm.length')
    refused('a float where an integer is required (KEY_TRIM below 1.0)', c.call(0x0116, {'name': name, 'below': Float(1)}),
            'CRYPTOD_ERR_INVALID_ARGUMENT', 'below')
    refused('an unknown field is refused by name', c.call('DIGEST', {'algorithm': 'SHA-256', 'data': b'', 'extra': 1}),
            'CRYPTOD_ERR_INVALID_ARGUMENT', 'extra')
    refused('an unknown field inside a batch item is named with its index',
            c.call('MANAGED_ENCRYPT', {'key': name, 'items': [{'plaintext': b'1'}, {'plaintext': b'2', 'aadd': b''}]}),
            'CRYPTOD_ERR_INVALID_ARGUMENT', 'items[1].aadd')
    refused('a wrongly typed field names itself', c.call('ENCRYPT', {'algorithm': {'name': 'AES-GCM', 'iv': 'text'}, 'key': h, 'data': b''}),
            'CRYPTOD_ERR_INVALID_ARGUMENT', 'algorithm.iv')
    refused('STATUS with a payload that is not a map', c.call('STATUS', [1]), 'CRYPTOD_ERR_INVALID_ARGUMENT')
    refused('KEY_LIST with a payload that is not a map', c.call('KEY_LIST', 'x'), 'CRYPTOD_ERR_INVALID_ARGUMENT')
    refused('KEY_LIST with a field', c.call('KEY_LIST', {'all': True}), 'CRYPTOD_ERR_INVALID_ARGUMENT', 'all')
    mac = result(c.call('GENERATE_KEY', {'algorithm': {'name': 'HMAC', 'hash': 'SHA-256'}, 'extractable': False, 'usages': ['sign']}))
    refused('HMAC SIGN with a hash that contradicts the key',
            c.call('SIGN', {'algorithm': {'name': 'HMAC', 'hash': 'SHA-512'}, 'key': mac['handle'], 'data': b'm'}),
            'CRYPTOD_ERR_INVALID_ARGUMENT', 'algorithm.hash')
    tag = result(c.call('SIGN', {'algorithm': {'name': 'HMAC', 'hash': 'SHA-256'}, 'key': mac['handle'], 'data': b'm'}))
    check('HMAC SIGN with the key\'s own hash works', isinstance(tag, bytes) and len(tag) == 32)
    r = result(c.call('RELEASE', {'handle': h}))
    check('RELEASE replies null', r is None)
    c.s.close()

    # §3: a malformed CBOR payload is BAD_FRAME for its own id; the connection survives.
    c2 = Conn(path)
    result(c2.call('HELLO', {'version': 1}))
    refused('a CBOR tag is BAD_FRAME', c2.call('PING', raw=b'\xc1\x00'), 'CRYPTOD_ERR_BAD_FRAME')
    refused('a non-integer float in HELLO version is INVALID_ARGUMENT', Conn(path).call('HELLO', {'version': Float(1)}),
            'CRYPTOD_ERR_INVALID_ARGUMENT', 'version')
    c2.s.close()
    return failures


TIME_FIELDS = ('createdAt', 'notBefore')


def is_iso(s):
    # ISO-8601 UTC as §6.11 documents: YYYY-MM-DDTHH:MM:SS.sssZ
    return isinstance(s, str) and len(s) == 24 and s[4] == '-' and s[10] == 'T' and s.endswith('Z')


def check_description(d, name, what='KEY_CREATE'):
    """§6.11: every field of a managed key description has its documented type."""
    ok = (d.get('name') == name and d.get('type') == 'aes256-gcm' and d.get('origin') in ('api', 'config')
          and isinstance(d.get('disabled'), bool) and (d.get('currentVersion') is None or isinstance(d.get('currentVersion'), int))
          and (d.get('derived') is None or isinstance(d.get('derived'), dict)) and isinstance(d.get('policy'), dict)
          and isinstance(d.get('versions'), list) and len(d['versions']) >= 1)
    check(what + ': name, type, origin, disabled, currentVersion, derived, policy, versions', ok, d)
    p = d.get('policy', {})
    check(what + ': policy fields as documented',
          (p.get('rotationPeriod') is None or isinstance(p.get('rotationPeriod'), str)) and isinstance(p.get('prefetchPeriod'), str)
          and (p.get('gracePeriod') is None or isinstance(p.get('gracePeriod'), str)) and isinstance(p.get('clockTolerance'), str)
          and isinstance(p.get('minDecryptionVersion'), int) and isinstance(p.get('exportable'), bool)
          and isinstance(p.get('deletionProtection'), bool) and isinstance(p.get('clients'), dict), p)
    for v in d.get('versions', []):
        check(what + ': version %s fields as documented' % v.get('version'),
              isinstance(v.get('version'), int) and v.get('state') in ('active', 'decrypt-only', 'disabled', 'destroyed')
              and all(is_iso(v.get(f)) for f in TIME_FIELDS) and (v.get('notAfter') is None or is_iso(v.get('notAfter')))
              and ('encryptionsReserved' not in v or isinstance(v['encryptionsReserved'], int))
              and ('damaged' not in v or isinstance(v['damaged'], str)), v)


if __name__ == '__main__':
    sys.exit(min(main(sys.argv[1]), 100))

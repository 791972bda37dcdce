"""Drive cryptod's Vault-compatible transit API with hvac (Debian's python3-hvac).

Run by test/vault-hvac.test.ts with VAULT_ADDR, ADMIN_TOKEN (a token client
with --admin-client) and OTHER_TOKEN (a client the keys grant nothing).
Every check is an assert; the script prints one line per step and exits
non-zero at the first failure.
"""
import base64
import os
import sys

import hvac
from hvac import exceptions

addr = os.environ["VAULT_ADDR"]
admin = hvac.Client(url=addr, token=os.environ["ADMIN_TOKEN"])
other = hvac.Client(url=addr, token=os.environ["OTHER_TOKEN"])
t = admin.secrets.transit
b64 = lambda b: base64.b64encode(b).decode()
prefix = os.environ.get("KEY_PREFIX", "hv")
steps = 0


def step(name):
    global steps
    steps += 1
    print("ok", name, flush=True)


def expect(exc, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc as e:
        return e
    raise AssertionError("expected %s from %s" % (exc.__name__, fn.__name__))


assert admin.sys.is_initialized() and not admin.sys.is_sealed()
step("sys/health")
me = admin.lookup_token()["data"]
assert me["display_name"] == "vault-admin", me
step("lookup-self")

aes = prefix + "-aes"
t.create_key(aes, key_type="aes256-gcm96")
k = t.read_key(aes)["data"]
assert k["type"] == "aes256-gcm96" and k["latest_version"] == 1 and "1" in k["keys"], k
step("create + read")
assert aes in t.list_keys()["data"]["keys"]
step("list (LIST method)")

ct = t.encrypt_data(aes, b64(b"hello transit"))["data"]["ciphertext"]
assert ct.startswith("vault:v1:"), ct
pt = t.decrypt_data(aes, ct)["data"]["plaintext"]
assert base64.b64decode(pt) == b"hello transit"
step("encrypt/decrypt")

ctx = b64(b"tenant-7")
ct_ctx = t.encrypt_data(aes, b64(b"bound"), context=ctx)["data"]["ciphertext"]
assert base64.b64decode(t.decrypt_data(aes, ct_ctx, context=ctx)["data"]["plaintext"]) == b"bound"
expect(exceptions.InvalidRequest, t.decrypt_data, aes, ct_ctx, context=b64(b"tenant-8"))
step("context binds like AAD")

batch = [{"plaintext": b64(("item %d" % i).encode()), "reference": "ref-%d" % i} for i in range(10)]
batch[3]["context"] = ctx
res = t.encrypt_data(aes, "", batch_input=batch)["data"]["batch_results"]
assert [r["reference"] for r in res] == ["ref-%d" % i for i in range(10)], res
dec_in = [{"ciphertext": r["ciphertext"], "reference": r["reference"]} for r in res]
dec_in[3]["context"] = ctx
dec = t.decrypt_data(aes, "", batch_input=dec_in)["data"]["batch_results"]
assert [base64.b64decode(r["plaintext"]) for r in dec] == [("item %d" % i).encode() for i in range(10)]
assert [r["reference"] for r in dec] == ["ref-%d" % i for i in range(10)]
step("batch encrypt/decrypt with reference and context")

t.rotate_key(aes)
assert t.read_key(aes)["data"]["latest_version"] == 2
rw = t.rewrap_data(aes, ct)["data"]["ciphertext"]
assert rw.startswith("vault:v2:"), rw
assert base64.b64decode(t.decrypt_data(aes, rw)["data"]["plaintext"]) == b"hello transit"
rwb = t.rewrap_data(aes, "", batch_input=[{"ciphertext": ct}, {"ciphertext": ct_ctx, "context": ctx}])["data"]["batch_results"]
assert all(r["ciphertext"].startswith("vault:v2:") for r in rwb), rwb
step("rotate + rewrap (single and batch)")

t.update_key_configuration(aes, min_decryption_version=2)
expect(exceptions.InvalidRequest, t.decrypt_data, aes, ct)
t.update_key_configuration(aes, min_decryption_version=1)
step("config min_decryption_version")

t.trim_key(aes, min_version=2)
k = t.read_key(aes)["data"]
assert list(k["keys"].keys()) == ["2"] and k["min_available_version"] == 2, k
step("trim")

for typ, hash_alg in (("ecdsa-p256", "sha2-256"), ("ed25519", None), ("rsa-3072", "sha2-256"), ("ecdsa-p384", "sha2-384")):
    name = prefix + "-" + typ
    t.create_key(name, key_type=typ)
    kwargs = {} if hash_alg is None else {"hash_algorithm": hash_alg}
    if typ == "rsa-3072":
        kwargs["signature_algorithm"] = "pss"
    sig = t.sign_data(name, b64(b"message"), **kwargs)["data"]["signature"]
    assert sig.startswith("vault:v1:")
    assert t.verify_signed_data(name, b64(b"message"), signature=sig, **kwargs)["data"]["valid"] is True
    assert t.verify_signed_data(name, b64(b"massage"), signature=sig, **kwargs)["data"]["valid"] is False
    pub = t.read_key(name)["data"]["keys"]["1"]["public_key"]
    assert pub, typ
    if typ.startswith("ecdsa"):
        jws = t.sign_data(name, b64(b"message"), marshaling_algorithm="jws", **kwargs)["data"]["signature"]
        assert "+" not in jws and "/" not in jws
        assert t.verify_signed_data(name, b64(b"message"), signature=jws, marshaling_algorithm="jws", **kwargs)["data"]["valid"] is True
step("sign/verify ecdsa-p256, ed25519, rsa-3072 (pss), ecdsa-p384; asn1 and jws")
e = expect(exceptions.InvalidRequest, t.sign_data, prefix + "-rsa-3072", b64(b"m"), signature_algorithm="pkcs1v15")
assert "pss" in str(e), str(e)
step("pkcs1v15 refused, naming pss")

mac = prefix + "-hmac"
# hvac 0.11's create_key predates type=hmac: the generic write sends it.
admin.write("transit/keys/" + mac, type="hmac")
h = t.generate_hmac(mac, b64(b"payload"))["data"]["hmac"]
assert h.startswith("vault:v1:")
assert t.verify_signed_data(mac, b64(b"payload"), hmac=h)["data"]["valid"] is True
assert t.verify_signed_data(mac, b64(b"payloaf"), hmac=h)["data"]["valid"] is False
step("hmac/verify")

sha = t.hash_data(b64(b"abc"), algorithm="sha2-256")["data"]["sum"]
assert sha == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", sha
rnd = t.generate_random_bytes(n_bytes=48)["data"]["random_bytes"]
assert len(base64.b64decode(rnd)) == 48
step("hash + random")

expect(exceptions.Forbidden, t.export_key, aes, "encryption-key")
exp = prefix + "-exp"
t.create_key(exp, key_type="aes256-gcm96", exportable=True)
keys = t.export_key(exp, "encryption-key")["data"]["keys"]
assert len(base64.b64decode(keys["1"])) == 32
step("export (exportable only)")

e = expect(exceptions.InvalidRequest, t.create_key, prefix + "-bad", key_type="rsa-2048")
assert "aes256-gcm96" in str(e) and "rsa-3072" in str(e), str(e)
step("unsupported type names the supported ones")

kek = prefix + "-kek"
# hvac 0.11's create_key knows only Vault's types: the generic write creates cryptod's aes256-kwp KEK.
admin.write("transit/keys/" + kek, type="aes256-kwp")
wrapped = t.generate_data_key(kek, key_type="wrapped", context=ctx, bits=128)["data"]
assert wrapped["ciphertext"].startswith("vault:v1:") and wrapped["key_version"] == 1 and "plaintext" not in wrapped, wrapped
plain = t.generate_data_key(kek, key_type="plaintext", context=ctx)["data"]
key = base64.b64decode(plain["plaintext"])
assert len(key) == 32, plain
assert base64.b64decode(t.decrypt_data(kek, plain["ciphertext"], context=ctx)["data"]["plaintext"]) == key
assert len(base64.b64decode(t.decrypt_data(kek, wrapped["ciphertext"])["data"]["plaintext"])) == 16
expect(exceptions.InvalidRequest, t.decrypt_data, kek, plain["ciphertext"], context=b64(b"tenant-8"))
step("datakey plaintext|wrapped; decrypt gives the data key back")

t.rotate_key(kek)
moved = t.rewrap_data(kek, plain["ciphertext"])["data"]
assert moved["ciphertext"].startswith("vault:v2:") and moved["key_version"] == 2, moved
assert base64.b64decode(t.decrypt_data(kek, moved["ciphertext"])["data"]["plaintext"]) == key
assert t.generate_data_key(kek, key_type="wrapped")["data"]["key_version"] == 2
step("datakey rewrap after a KEK rotation")

e = expect(exceptions.InvalidRequest, t.generate_data_key, kek, key_type="wrapped", bits=512)
assert "128 or 256" in str(e), str(e)
e = expect(exceptions.InvalidRequest, t.generate_data_key, aes, key_type="plaintext")
assert "aes256-kwp" in str(e), str(e)
expect(exceptions.InvalidPath, other.secrets.transit.generate_data_key, kek, key_type="wrapped")
expect(exceptions.InvalidPath, other.secrets.transit.decrypt_data, kek, plain["ciphertext"])
step("datakey bad input: bits 512, not a KEK, another client's KEK")

expect(exceptions.InvalidPath, other.secrets.transit.encrypt_data, aes, b64(b"x"))
expect(exceptions.Forbidden, other.secrets.transit.create_key, prefix + "-theirs")
assert aes not in (other.secrets.transit.list_keys()["data"]["keys"])
step("another client sees nothing of the keys")

expect(exceptions.InvalidRequest, t.delete_key, aes)
t.update_key_configuration(aes, deletion_allowed=True)
t.delete_key(aes)
expect(exceptions.InvalidPath, t.read_key, aes)
step("delete needs deletion_allowed")

print("DONE", steps, flush=True)

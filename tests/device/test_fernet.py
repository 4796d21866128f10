# Fernet on both interpreters (run with pytest, and with: micropython tests/mprun.py test_fernet).
# The vectors are the Fernet spec's published generate.json, verify.json and invalid.json
# (https://github.com/fernet/spec), written out here; "now" is converted to Unix seconds.
from sensormesh.device.secure import fernet
from sensormesh.device.secure.fernet import Fernet, InvalidToken, PureFernet

SECRET = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="
T0 = 499162800   # 1985-10-26T01:20:00-07:00
IV = bytes(range(16))
SPEC_TOKEN = b"gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA=="

# invalid.json: (desc, token, now); every entry uses ttl_sec 60 and SECRET.
INVALID = [
    ("incorrect mac",
     "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAl1-szkFVzXTuGb4hR8AKtwcaX1YdykQUFBQUFBQUFBQQ==",
     T0 + 1),
    ("too short", "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPA==", T0 + 1),
    ("invalid base64",
     "%%%%%%%%%%%%%AECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAl1-szkFVzXTuGb4hR8AKtwcaX1YdykRtfsH-p1YsUD2Q==",
     T0 + 1),
    ("payload size not multiple of block size",
     "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPOm73QeoCk9uGib28Xe5vz6oxq5nmxbx_v7mrfyudzUm", T0 + 1),
    ("payload padding error",
     "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0ODz4LEpdELGQAad7aNEHbf-JkLPIpuiYRLQ3RtXatOYREu2FWke6CnJNYIbkuKNqOhw==",
     T0 + 1),
    ("far-future TS (unacceptable clock skew)",
     "gAAAAAAdwStRAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAnja1xKYyhd-Y6mSkTOyTGJmw2Xc2a6kBd-iX9b_qXQcw==",
     T0 + 1),
    ("expired TTL",
     "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAl1-szkFVzXTuGb4hR8AKtwcaX1YdykRtfsH-p1YsUD2Q==",
     T0 + 91),
    ("incorrect IV (causes padding error)",
     "gAAAAAAdwJ6xBQECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAkLhFLHpGtDBRLRTZeUfWgHSv49TF2AUEZ1TIvcZjK1zQ==",
     T0 + 1),
    ("trailing characters after b64 padding",
     "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==trailingdata",
     T0 + 1),
    ("invalid characters in b64",
     "*gAAAAAAdwJ6wAAECAwQFBgcI!CQoLDA0ODy021?cpGVWKZ_eEwC@GM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==",
     T0 + 1),
    ("invalid non-urlsafe characters in b64",
     "gAAAAAAdwJ6wAAEC/AwQFBgcICQoLDA0ODy+021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==",
     T0 + 1),
]


def raises(exc, fn, *args):
    try:
        fn(*args)
    except exc:
        return True
    raise AssertionError("%s was not raised" % exc.__name__)


def test_spec_generate():
    for cls in (PureFernet, Fernet):
        assert cls(SECRET)._encrypt_from_parts(b"hello", T0, IV) == SPEC_TOKEN


def test_spec_verify():
    for cls in (PureFernet, Fernet):
        assert cls(SECRET).decrypt_at_time(SPEC_TOKEN, 60, T0 + 1) == b"hello"
        assert cls(SECRET).decrypt(SPEC_TOKEN.decode()) == b"hello"   # no ttl: age does not matter


def test_spec_invalid():
    for cls in (PureFernet, Fernet):
        f = cls(SECRET)
        for desc, token, now in INVALID:
            try:
                f.decrypt_at_time(token, 60, now)
            except InvalidToken:
                continue
            raise AssertionError("%s accepted the invalid vector %r" % (cls.__name__, desc))


def test_roundtrip_both_implementations():
    key = fernet.generate_key()
    pure, fast = PureFernet(key), Fernet(key)
    # around the base64 chunks a token is encoded in (channel._CHUNK: 384 bytes a chunk on a board)
    for n in (0, 1, 15, 16, 17, 31, 32, 33, 100, 300, 311, 312, 327, 328, 695, 696, 1080, 4000):
        data = bytes((i * 7 + n) & 255 for i in range(n))
        assert fast.decrypt(pure.encrypt(data)) == data
        assert pure.decrypt(fast.encrypt(data)) == data
        assert pure.decrypt(pure.encrypt_prefixed(b"\x00\x01", data)) == b"\x00\x01" + data
        assert fast.decrypt(fast.encrypt_prefixed(b"ab", data)) == b"ab" + data


def test_a_token_made_in_pieces_is_the_token_made_at_once():
    """seal makes a token a few hundred bytes at a time (a board needs no block its size): for
    every piece size and around every piece boundary the token is the one made in one go, which
    is the Fernet spec's (cryptography's on CPython); a frame's pieces start with its length."""
    from sensormesh.device.secure import channel
    f = PureFernet(SECRET)
    ref = Fernet(SECRET)
    real = channel._SEAL_STEP
    try:
        for n in (0, 1, 15, 16, 17, 100, 130, 131, 150, 175, 176, 177, 200, 400, 463, 464, 600, 1000):
            data = bytes((i * 13 + n) & 255 for i in range(n))
            channel._SEAL_STEP = 1 << 16
            whole = f._encrypt_from_parts(data, T0, IV)
            assert whole == ref._encrypt_from_parts(data, T0, IV), n
            for step in (48, 64, 96, 192):
                channel._SEAL_STEP = step
                assert f._encrypt_from_parts(data, T0, IV) == whole, (n, step)
                pieces = []
                channel.seal(f._sign, f._enc, b"", data, T0, IV, pieces.append, True)
                frame = b"".join(pieces)
                assert int.from_bytes(frame[:4], "big") == len(whole) and frame[4:] == whole, (n, step)
                assert len(pieces) == 1 or max(len(p) for p in pieces) <= step // 3 * 4 + 4, (n, step)
                assert len(pieces) >= (len(whole) + step * 4 // 3 - 1) // (step * 4 // 3), (n, step)
    finally:
        channel._SEAL_STEP = real


def test_fresh_iv_per_token():
    f = Fernet(fernet.generate_key())
    assert f.encrypt(b"same") != f.encrypt(b"same")


def test_wrong_key_and_tampering_refused():
    key = fernet.generate_key()
    pure = PureFernet(key)
    tok = pure.encrypt(b"some value")
    raises(InvalidToken, PureFernet(fernet.generate_key()).decrypt, tok)
    raises(InvalidToken, Fernet(fernet.generate_key()).decrypt, tok)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(0, len(tok) - 2, 3):
        b = bytearray(tok)
        b[i] = alphabet[(alphabet.find(bytes([b[i]])) + 1) % 64]
        raises(InvalidToken, pure.decrypt, bytes(b))
    raises(InvalidToken, pure.decrypt, tok[:-4])
    raises(InvalidToken, pure.decrypt, b"")
    raises(InvalidToken, pure.decrypt, "not a token")


def test_ttl():
    f = PureFernet(SECRET)
    tok = f.encrypt_at_time(b"x", 1000000)
    assert f.decrypt_at_time(tok, 10, 1000010) == b"x"
    raises(InvalidToken, f.decrypt_at_time, tok, 10, 1000011)
    raises(InvalidToken, f.decrypt_at_time, tok, 10, 1000000 - 61)   # too far in the future
    assert f.decrypt_at_time(tok, 10, 1000000 - 60) == b"x"


def test_bad_keys():
    for k in ("", "abc", fernet.b64encode(bytes(31)), fernet.b64encode(bytes(33)), "%" * 44):
        raises(ValueError, PureFernet, k)
        raises(ValueError, Fernet, k)


def test_hmac_rfc4231():
    h = fernet.hmac_sha256
    assert h(b"\x0b" * 20, b"Hi There") == bytes.fromhex(
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    assert h(b"Jefe", b"what do ya want for nothing?") == bytes.fromhex(
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    assert h(b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First") == bytes.fromhex(
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")


def test_b64_strict():
    assert fernet.b64decode(fernet.b64encode(b"\xfb\xff")) == b"\xfb\xff"
    assert fernet.b64encode(b"\xfb\xff") == b"-_8="
    for bad in (b"+/8=", b"-_8", b"-_8=x", b"-_9=", b"-_8=\n", b"====", b" -_8"):
        raises(ValueError, fernet.b64decode, bad)

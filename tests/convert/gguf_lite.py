"""A minimal GGUF v3 reader (metadata, tensor table, F32/F16/Q8_0 data) for the convert tests.

gguf-py's GGUFReader builds a numpy view per array element, which takes ~30 s for a 250k-token
vocabulary; this one reads the same file in well under a second. test_convert.py checks that both
readers agree on a converted BERT file.
"""
import struct

import numpy as np

GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8
TYPE_NAMES = {GGML_F32: "F32", GGML_F16: "F16", GGML_Q8_0: "Q8_0"}
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_NP = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1", 10: "<u8", 11: "<i8",
       12: "<f8"}
STRING, ARRAY = 8, 9
_U64 = struct.Struct("<Q")


class Tensor:
    def __init__(self, name, shape, ggml_type, offset):
        self.name, self.shape, self.type, self.offset = name, shape, ggml_type, offset  # shape: ggml order

    @property
    def type_name(self):
        return TYPE_NAMES.get(self.type, str(self.type))


class GGUF:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.raw = f.read()
        self.pos = 0
        if self.raw[:4] != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        self.pos = 4
        self.version = self._u("<I")
        n_tensors, n_kv = self._u("<Q"), self._u("<Q")
        self.kv, self.kv_types = {}, {}
        for _ in range(n_kv):
            key = self._str()
            t = self._u("<I")
            self.kv[key], self.kv_types[key] = self._value(t)
        self.tensors = []
        for _ in range(n_tensors):
            name = self._str()
            nd = self._u("<I")
            shape = [self._u("<Q") for _ in range(nd)]
            self.tensors.append(Tensor(name, shape, self._u("<I"), self._u("<Q")))
        align = int(self.kv.get("general.alignment", 32))
        self.data_start = (self.pos + align - 1) // align * align
        self.by_name = {t.name: t for t in self.tensors}

    def _u(self, fmt):
        v = struct.unpack_from(fmt, self.raw, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def _str(self):
        n = self._u("<Q")
        s = self.raw[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def _value(self, t):
        """(value, type description): scalars as Python values, arrays as lists / numpy arrays."""
        if t == STRING:
            return self._str(), "STRING"
        if t == ARRAY:
            et, n = self._u("<I"), self._u("<Q")
            if et == STRING:  # inlined: vocabularies hold 250k strings
                raw, pos, out, unpack = self.raw, self.pos, [], _U64.unpack_from
                for _ in range(n):
                    ln = unpack(raw, pos)[0]
                    out.append(raw[pos + 8:pos + 8 + ln].decode("utf-8"))
                    pos += 8 + ln
                self.pos = pos
                return out, "ARRAY[STRING]"
            if et in _NP:
                a = np.frombuffer(self.raw, _NP[et], n, self.pos)
                self.pos += a.nbytes
                return a, f"ARRAY[{et}]"
            raise ValueError(f"unsupported array element type {et}")
        v = self._u(_SCALAR[t])
        return v, str(t)

    def array(self, name):
        """Tensor data as float64, numpy shape (outermost first)."""
        t = self.by_name[name]
        n = int(np.prod(t.shape))
        off = self.data_start + t.offset
        if t.type == GGML_F32:
            a = np.frombuffer(self.raw, "<f4", n, off)
        elif t.type == GGML_F16:
            a = np.frombuffer(self.raw, "<f2", n, off)
        elif t.type == GGML_Q8_0:
            blocks = np.frombuffer(self.raw, np.uint8, n // 32 * 34, off).reshape(-1, 34)
            d = blocks[:, :2].copy().view("<f2").astype(np.float64)
            q = blocks[:, 2:].copy().view(np.int8).astype(np.float64)
            a = (d * q).reshape(-1)
        else:
            raise ValueError(f"{name}: unsupported type {t.type}")
        return a.astype(np.float64).reshape(list(reversed(t.shape)))

#!/usr/bin/env python3
"""Writes the seed corpora of the file-format fuzz targets (fuzz/corpus/{idx,npy,png,csv}/):
small valid inputs of each format (and a few near misses the loaders must refuse), with the Python
standard library only. The YAML seeds are examples/*.yaml; the proto and checkpoint seeds come
from the project's own writers (vsdm_fuzz_write_proto_seeds, vsdm_fuzz_write_checkpoint_seed; see
scripts/fuzz.sh --seeds). usage: fuzz/make_seeds.py [CORPUS_DIR]   (default: fuzz/corpus)"""
import gzip
import os
import struct
import sys
import zlib


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def idx_images(n, h, w):
    return struct.pack(">IIII", 0x803, n, h, w) + bytes((i * 37) % 256 for i in range(n * h * w))


def npy(descr, shape, payload, version=1):
    dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, dims)
    pre = 10 if version == 1 else 12
    header += " " * ((64 - (pre + len(header) + 1) % 64) % 64) + "\n"
    size = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + size + header.encode() + payload


def png(width, height, color_type, bit_depth, rows, palette=None):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    raw = b"".join(b"\x00" + r for r in rows)  # filter type 0 on every row
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))
    if palette:
        out += chunk(b"PLTE", palette)
    return out + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    # IDX: 2 images (matching the fuzz target's sibling labels file), gzip, other sizes, labels.
    write(f"{root}/idx/two-3x2.idx", idx_images(2, 3, 2))
    write(f"{root}/idx/two-4x4.idx.gz", gzip.compress(idx_images(2, 4, 4), mtime=0))
    write(f"{root}/idx/one-2x2.idx", idx_images(1, 2, 2))
    write(f"{root}/idx/labels-3.idx", struct.pack(">II", 0x801, 3) + bytes([0, 1, 9]))
    write(f"{root}/idx/truncated.idx", idx_images(2, 3, 2)[:-3])
    # NPY: uint8 [N,H,W], float32 NCHW, float64 NHWC, format 2.0, a 1-D float array, a 0-d array.
    write(f"{root}/npy/u8-2x3x3.npy", npy("|u1", (2, 3, 3), bytes(range(0, 18 * 14, 14))))
    write(f"{root}/npy/f4-nchw-1x1x2x2.npy", npy("<f4", (1, 1, 2, 2), struct.pack("<4f", 0, 0.25, 0.5, 1)))
    write(f"{root}/npy/f8-nhwc-1x2x2x3.npy", npy("<f8", (1, 2, 2, 3), struct.pack("<12d", *[i / 11 for i in range(12)])))
    write(f"{root}/npy/u8-v2-1x2x2.npy", npy("|u1", (1, 2, 2), bytes([0, 85, 170, 255]), version=2))
    write(f"{root}/npy/f4-vector-3.npy", npy("<f4", (3,), struct.pack("<3f", 1.5, -2, 3)))
    write(f"{root}/npy/f8-scalar.npy", npy("<f8", (), struct.pack("<d", 0.5)))
    # PNG: 8-bit grey, RGB, RGBA, grey+alpha, palette, 16-bit grey, 1-bit grey.
    write(f"{root}/png/grey-3x2.png", png(3, 2, 0, 8, [bytes([0, 128, 255]), bytes([10, 20, 30])]))
    write(f"{root}/png/rgb-2x2.png", png(2, 2, 2, 8, [bytes([255, 0, 0, 0, 255, 0]), bytes([0, 0, 255, 9, 9, 9])]))
    write(f"{root}/png/rgba-2x1.png", png(2, 1, 6, 8, [bytes([255, 0, 0, 128, 0, 255, 0, 255])]))
    write(f"{root}/png/grey-alpha-1x2.png", png(1, 2, 4, 8, [bytes([200, 100]), bytes([50, 255])]))
    write(f"{root}/png/palette-2x2.png", png(2, 2, 3, 8, [bytes([0, 1]), bytes([1, 0])], palette=bytes([0, 0, 0, 255, 255, 0])))
    write(f"{root}/png/grey16-2x1.png", png(2, 1, 0, 16, [struct.pack(">2H", 0, 65535)]))
    write(f"{root}/png/grey1-8x1.png", png(8, 1, 0, 1, [bytes([0b10110010])]))
    # CSV: a dated daily table, a plain numeric table, options lines (see fuzz/csv_fuzzer.cc), CRLF + BOM.
    dated = "date,rain,temp,station\n" + "".join(
        f"2020-01-{d:02d},{[0, 0, 1.5, 0, 3][d % 5]},{10 + (d * 7) % 5 - 0.5 * d},s{d % 3}\n" for d in range(1, 21))
    write(f"{root}/csv/dated.csv", dated)
    write(f"{root}/csv/plain.csv", "a,b\n" + "".join(f"{i * 0.5},{(i * i) % 7}\n" for i in range(20)))
    write(f"{root}/csv/opts-columns.csv",
          "#opts context=2;horizon=2;columns=temp;log1p=none;test_start=2020-01-07;eval_stride=2\n" + dated)
    write(f"{root}/csv/opts-log1p.csv", "#opts context=1;horizon=1;log1p=rain;test_start=6\n" + dated)
    write(f"{root}/csv/crlf-bom.csv", "\ufeffx,y\r\n" + "".join(f"{i},{10 - i * 1.25}\r\n" for i in range(16)))
    write(f"{root}/csv/ragged.csv", "a,b\n1,2\n3\n")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Print the table of npmath.c: 2^(j/16), j = 0..15, each the double nearest
to the exact value (computed here with 80-digit decimals)."""
import struct
from decimal import Decimal, getcontext
from fractions import Fraction

getcontext().prec = 80
ln2 = Decimal(2).ln()
bits = lambda d: struct.unpack("<Q", struct.pack("<d", d))[0]
tab = [bits(float(Fraction((ln2 * j / 16).exp()))) for j in range(16)]
print("static const uint64_t pow2_16th[16] = {")
for i in range(0, 16, 4):
    print("    " + ", ".join("0x%016xull" % v for v in tab[i:i + 4]) + ",")
print("};")

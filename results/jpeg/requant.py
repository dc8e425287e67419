"""Re-encode every CIFAR-10 image of the q75 copy at a lower JPEG quality (4:2:0, Pillow/libjpeg-turbo);
print the size of the step (RMSE, PSNR). Usage: python results/jpeg/requant.py SRC.npz DST.npz QUALITY"""
import io, sys
import numpy as np
from PIL import Image
src, dst, q = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = np.load(src)
def requant(x):
    out = np.empty_like(x)
    for i, img in enumerate(x):
        buf = io.BytesIO(); Image.fromarray(img).save(buf, "JPEG", quality=q, subsampling=2); buf.seek(0)
        out[i] = np.asarray(Image.open(buf).convert("RGB"))
    return out
xtr, xte = requant(d["x_train"]), requant(d["x_test"])
for name, a, b in (("train", d["x_train"], xtr), ("test", d["x_test"], xte)):
    mse = ((a.astype(np.float64) - b) ** 2).mean()
    print(f"{name}: q75 copy -> q{q}: RMSE {mse ** 0.5:.2f} grey levels, PSNR {10 * np.log10(255 ** 2 / mse):.2f} dB")
np.savez(dst, x_train=xtr, y_train=d["y_train"], x_test=xte, y_test=d["y_test"], classes=d["classes"])

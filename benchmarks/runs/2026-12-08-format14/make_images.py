"""The images format 14's pixel predictor was chosen on (tuning) and checked on afterwards (validation), as
PPM/PGM in the current folder. Needs Pillow, matplotlib, the shared corpus at ../shared (train/ only) and Debian's
mate-backgrounds package unpacked at /tmp/wp/x (`apt-get download mate-backgrounds; dpkg-deb -x *.deb x`).

Tuning: gravel.png and text.png (the held-out images of train/, grey), matplotlib's grace_hopper.jpg (in colour
and grey), four photos of mate-backgrounds (GPL-2+) reduced 4 x 4 by box averaging, which wipes out their JPEG
blocks (one made grey), and gravel stored as RGB. Validation (never looked at while choosing): six more of
mate-backgrounds' photos, the same way (two made grey)."""
import os
import sys

import matplotlib
from PIL import Image

TRAIN = os.path.join(sys.argv[1] if len(sys.argv) > 1 else "../shared", "corpus/train/image")
MATE = "/tmp/wp/x/usr/share/backgrounds/mate/nature/"
HOPPER = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data/sample_data/grace_hopper.jpg")


def save(im: Image.Image, name: str, grey: bool = False):
    im = im.convert("L" if grey else "RGB")
    im.save(name + (".pgm" if grey else ".ppm"))


def reduced(name: str) -> Image.Image:
    im = Image.open(MATE + name + ".jpg").convert("RGB")
    return im.resize((im.size[0] // 4, im.size[1] // 4), Image.BOX)


save(Image.open(os.path.join(TRAIN, "gravel.png")), "gravel", True)
save(Image.open(os.path.join(TRAIN, "text.png")), "text", True)
save(Image.open(os.path.join(TRAIN, "gravel.png")), "gravelrgb")
save(Image.open(HOPPER), "hopper")
save(Image.open(HOPPER), "hoppergray", True)
for name, grey in [("Dune", False), ("LadyBird", False), ("Storm", False), ("RainDrops", True)]:
    save(reduced(name), name.lower(), grey)
os.makedirs("validation", exist_ok=True)
for name, grey in [("TwoWings", False), ("Wood", False), ("Blinds", True), ("GreenMeadow", False),
                   ("YellowFlower", True), ("Garden", False)]:
    save(reduced(name), os.path.join("validation", name.lower()), grey)

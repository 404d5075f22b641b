"""A synthetic dataset in Pascal VOC 2012's exact on-disk layout, for offline demos and tests.

Each scene is a textured background (class 0) with 1-4 objects of the 20 VOC object classes
drawn over it, later objects occluding earlier ones (every object keeps at least half of its
area visible). A class is its *shape and texture*, never its colour: every object gets two
colours drawn from one shared, jittered palette (at least 80 levels of luma apart, so the texture
is high-contrast), and so does the background.

=============  ===========================  ==============================================
class          silhouette                   texture (period in px, orientation in image)
=============  ===========================  ==============================================
aeroplane      fuselage, wings and tail     horizontal stripes, 10
bicycle        two rings joined by a bar    vertical stripes, 10
bird           long triangle                diagonal stripes (45 deg), 10
boat           crescent                     diamond checkerboard (45 deg), 14
bottle         body with a neck             checkerboard, 14
bus            rectangle with 3 windows     basket weave: 16 px cells of 3 stripes
car            body with a cabin            filled dots on a grid, 12
cat            five-pointed star            thin concentric rings about the centre, 10
chair          L shape                      soft ramps with a hard edge, along x, 12
cow            ellipse                      grain: random 4 px blocks
diningtable    T shape                      axis-aligned grid lines, 12
dog            hexagon                      vertical bricks, 20 x 10
horse          arrow                        horizontal zigzag (chevron) stripes, 10
motorbike      ring                         vertical wavy stripes, 10
person         head over a trapezoid body   bricks, 10 x 20
pottedplant    dome on a pot                marble: continuous-tone blobs about 7 px across
sheep          flower of six discs          hollow rings on a grid, 12
sofa           U shape                      thin diagonal cross-hatch, 14
train          parallelogram                plaid (three tones), 12
tvmonitor      square frame                 contour lines of smooth noise
=============  ===========================  ==============================================

The background is smooth, low-frequency clouds plus a linear gradient, lower in contrast than
any object texture, so a 16-32 px receptive field is enough to tell every class apart, while
the silhouettes (shapes rotate freely, texture orientation is fixed up to a few degrees) give
the boundaries. Training flips images left-right, so every texture is its own mirror image
(bird's 45 deg stripes mirror to 135 deg, which no other class uses). Objects vary 3x in scale
(square root of area 0.3-0.9 of the image's, at least 32 px); image sides are 96-256 px and
never multiples of 32; a 255 ("void") band 4-5 px wide covers every label boundary, as in VOC.
Every image has its own seed derived from (seed, split, index), and the classes of a split are
dealt out of shuffled decks of all 20, so class counts are balanced and files are
byte-identical for a given seed.

Modules: :mod:`.textures` (the 20 textures), :mod:`.shapes` (the 20 silhouettes),
:mod:`.scenes` (colours, background, placing objects, the void band) and :mod:`.writer` (the VOC
tree, written into ``root/.demo_partial/`` with a completion marker last, then renamed into
place, so an interrupted run never looks complete).
"""

from segnet.data.demo.scenes import render_scene
from segnet.data.demo.writer import (
    FORMAT_VERSION,
    MARKER,
    demo_dataset_ready,
    generate_demo_dataset,
)

__all__ = [
    "FORMAT_VERSION",
    "MARKER",
    "demo_dataset_ready",
    "generate_demo_dataset",
    "render_scene",
]

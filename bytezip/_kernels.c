/* Compiled kernels of bytezip's coding loop, called through ctypes (bytezip/kernels.py).

   mixer_mix / mixer_update: one step of `mixing.Mixer` for all lanes, the same integer arithmetic as its
   numpy code (floor division and arithmetic shifts as numpy's // and >>).
   global_step / local_step: one patch / one byte of the exact model (`exact.Stepper`) for all lanes, and
   attention_forward the exact attention of the parallel forward: the same IEEE operations as the torch
   code in the same order (compiled without FMA contraction), and sums of integers as there.
   decoding_start / decode_steps: the decoding loop of `neural._decode_lanes` over those, with constriction's
   range decoder; mix_round_steps: the encoder's mixer loop of `mixing.mix_round`.
   So archives are the same byte for byte whichever path codes them; tests/test_kernels.py compares them.

   Built by setuptools as an optional extension: where it cannot be built, bytezip runs the numpy code.

   One extension, one translation unit: the files below, one concern each (csrc/), are included in this order
   (each uses what an earlier one declares; the last, products.c, turns on fused multiply-adds for itself). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "csrc/common.h"      /* types, vector clones, CPU flags, exact sums, integer division */
#include "csrc/mixer.h"       /* the mixer's constants, Input, Source and Mixer */
#include "csrc/match.c"       /* match models */
#include "csrc/record.c"      /* the record length finder (for the RECORD context) */
#include "csrc/context.c"     /* context models (PPM orders over the chunk and the history) */
#include "csrc/mixer.c"       /* the wiring: mixer_mix, mixer_mix_rows, mixer_update */
#include "csrc/signal.h"      /* Laplace tables shared by the signal predictors */
#include "csrc/image.c"       /* the pixel predictor */
#include "csrc/pcm.c"         /* the sample predictor */
#include "csrc/exact.c"       /* the exact model: linear layers, attention, steps */
#include "csrc/steps.c"       /* the coding loops: decoding (with constriction's range decoder), mixing */
#include "csrc/cpu.c"         /* detect_cpu and the VNNI int8 products */
#include "csrc/layout.c"      /* kernel_layout, checked at load */
#include "csrc/products.c"    /* integer-valued matrix products (fused multiply-adds allowed) */

static struct PyModuleDef kernels_module = {PyModuleDef_HEAD_INIT, "_kernels",
                                            "bytezip's compiled coding kernels (called through ctypes)", -1};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&kernels_module); }


/* ---- what bytezip/kernels.py checks at load: this build's constants and structure sizes ---- */

/* the constants and structure sizes of this build, for bytezip/kernels.py to check against its own at load:
   n pairs (name, value) written to out (at most max); returns n */
int kernel_layout(const char **names, i64 *values, int max) {
    const struct { const char *name; i64 value; } layout[] = {
        {"ONE", ONE}, {"N_BUCKETS", N_BUCKETS}, {"N_SETS", N_SETS}, {"N_GEO", N_GEO}, {"GEO_SETS", GEO_SETS},
        {"MAX_INPUTS", MAX_INPUTS}, {"MAX_ORDERS", MAX_ORDERS}, {"N_KINDS", N_KINDS},
        {"MATCH_MIN", MATCH_MIN}, {"MATCH_HASH_BITS", MATCH_BITS}, {"HISTORY_MATCH_MIN", HISTORY_MATCH_MIN},
        {"HISTORY_MATCH_BITS", HISTORY_MATCH_BITS}, {"OWN_HASH_BITS", OWN_BITS}, {"SHARED_HASH_BITS", SHARED_BITS},
        {"HIT_HALVE", HIT_HALVE}, {"MAX_LAYERS", MAX_LAYERS},
        {"SKIP_2_3", SKIP_2_3}, {"FIELDS", FIELDS}, {"ABOVE", ABOVE}, {"RECORD", RECORD},
        {"RECORD_STATE", RECORD_STATE}, {"RECORD_VOTES", RECORD_VOTES},
        {"FIELD_WINDOW", FIELD_WINDOW}, {"FIELD_MAX", FIELD_MAX}, {"SINCE_MAX", SINCE_MAX},
        {"SAMPLES", SAMPLES}, {"PIXELS", PIXELS},
        {"IMG_PREDICTORS", IMG_PREDICTORS}, {"IMG_ACTIVITY", IMG_ACTIVITY}, {"IMG_ERROR_SHIFT", IMG_ERROR_SHIFT},
        {"WIMG_SPATIAL", WIMG_SPATIAL}, {"WIMG_PREDICTORS", WIMG_PREDICTORS}, {"WIMG_ACTIVITY", WIMG_ACTIVITY},
        {"WIMG_ERROR_SHIFT", WIMG_ERROR_SHIFT}, {"WIMG_MED", WIMG_MED},
        {"WIMG_EXACT_SCALE", WIMG_EXACT_SCALE}, {"WIMG_FRACTION", WIMG_FRACTION},
        {"sizeof Input", sizeof(Input)}, {"sizeof Source", sizeof(Source)}, {"sizeof Mixer", sizeof(Mixer)},
        {"sizeof Linear", sizeof(Linear)}, {"sizeof Block", sizeof(Block)}, {"sizeof Attn", sizeof(Attn)},
        {"sizeof Stack", sizeof(Stack)}, {"sizeof LocalModel", sizeof(LocalModel)},
        {"sizeof GlobalModel", sizeof(GlobalModel)}, {"sizeof ImageState", sizeof(ImageState)},
        {"sizeof PcmState", sizeof(PcmState)}, {"sizeof Decoding", sizeof(Decoding)},
        {"sizeof MixerSteps", sizeof(MixerSteps)},
    };
    const int n = (int)(sizeof layout / sizeof layout[0]);
    for (int i = 0; i < n && i < max; i++) {
        names[i] = layout[i].name;
        values[i] = layout[i].value;
    }
    return n;
}

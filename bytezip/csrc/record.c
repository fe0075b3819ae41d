/* ---- the record length of each lane's chunk so far (predictors/record.py's numpy twin: what the chunk context
   RECORD reads), as paq8's record model finds it: a byte value that recurs at the same distance four times in
   a row votes for that distance; two candidates keep counts of their votes, and one becomes the record length
   once it has RECORD_VOTES. A lane's state: the last 4 positions of each byte value (newest first, -1: none),
   then the length and the two candidates with their votes. ---- */

enum { REC_LENGTH = 4 * 256, REC_FIRST, REC_FIRST_VOTES, REC_SECOND, REC_SECOND_VOTES };

/* the lane whose state is s coded x at position t */
INLINE void record_learn(i64 *s, i64 t, i64 x) {
    i64 *last = s + 4 * x;
    const i64 r = t - last[0];
    if (last[3] >= 0 && r > 1 && r == last[0] - last[1] && r == last[1] - last[2] && r == last[2] - last[3]) {
        if (r == s[REC_FIRST]) s[REC_FIRST_VOTES]++;
        else if (r == s[REC_SECOND]) s[REC_SECOND_VOTES]++;
        else if (s[REC_FIRST_VOTES] > s[REC_SECOND_VOTES]) s[REC_SECOND] = r, s[REC_SECOND_VOTES] = 1;
        else s[REC_FIRST] = r, s[REC_FIRST_VOTES] = 1;
    }
    for (int c = REC_FIRST; c <= REC_SECOND; c += 2)
        if (s[c + 1] >= RECORD_VOTES && s[REC_LENGTH] != s[c]) {
            s[REC_LENGTH] = s[c];
            s[REC_FIRST_VOTES] = s[REC_SECOND_VOTES] = 0;
        }
    last[3] = last[2], last[2] = last[1], last[1] = last[0], last[0] = t;
}

/* arm_dotprod.c: the int8 GEMM microkernel with sdot (Armv8.2 dot product: Cortex-A55/A76 and
 * later, e.g. the Raspberry Pi 5; not the Pi 4). Compiled with +dotprod in this translation unit
 * only and chosen at run time when HWCAP_ASIMDDP is set, so other CPUs never execute it. */
#if defined(__aarch64__)
#pragma GCC target("arch=armv8.2-a+dotprod")
#include <arm_neon.h>

#include "pn_internal.h"

#if PN_QMR != 8 || PN_QNR != 12 || PN_QKU != 4
#error "the sdot microkernel is written for an 8x12 tile of int8 quads"
#endif

void pn_qgemm_ukr_dotprod(int64_t kq, const pn_qv *a, const pn_qv *b, int32_t *acc,
                          int64_t ldacc, int32_t first) {
    int32x4_t s[8][3];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 3; j++) s[i][j] = vdupq_n_s32(0);
    for (int64_t p = 0; p < kq; p++) {
        /* b: three vectors of four columns x four depths; a: rows 0-3 and 4-7, a quad each */
        const int8x16_t b0 = vld1q_s8(b), b1 = vld1q_s8(b + 16), b2 = vld1q_s8(b + 32);
        const int8x16_t a0 = vld1q_s8(a), a1 = vld1q_s8(a + 16);
#define PN_DROW(I, AV, L)                                  \
    s[I][0] = vdotq_laneq_s32(s[I][0], b0, AV, L);         \
    s[I][1] = vdotq_laneq_s32(s[I][1], b1, AV, L);         \
    s[I][2] = vdotq_laneq_s32(s[I][2], b2, AV, L);
        PN_DROW(0, a0, 0)
        PN_DROW(1, a0, 1)
        PN_DROW(2, a0, 2)
        PN_DROW(3, a0, 3)
        PN_DROW(4, a1, 0)
        PN_DROW(5, a1, 1)
        PN_DROW(6, a1, 2)
        PN_DROW(7, a1, 3)
#undef PN_DROW
        a += PN_QMR * PN_QKU;
        b += PN_QNR * PN_QKU;
    }
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 3; j++) {
            int32_t *dst = acc + i * ldacc + 4 * j;
            vst1q_s32(dst, first ? s[i][j] : vaddq_s32(vld1q_s32(dst), s[i][j]));
        }
}

#endif /* __aarch64__ */

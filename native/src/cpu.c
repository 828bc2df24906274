/* cpu.c: CPU feature detection, the SIMD cap, and the table of kernels for the active level. */
#include "pn_internal.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1UL << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#endif

/* Detected once, then only read; the cap is set by tests and benchmarks. Both are plain ints
   accessed atomically: a detection race only repeats the same idempotent work. */
static int pn_detected = -1;
static int pn_limit = 1 << 30;

static int pn_detect(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    /* __builtin_cpu_supports("avx2") already requires the OS to save YMM state (XGETBV). */
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return PN_SIMD_GENERIC;
    /* likewise "avx512f" requires the OS to save the ZMM state */
    if (__builtin_cpu_supports("avx512f")) return PN_SIMD_AVX512;
    return PN_SIMD_AVX2_FMA;
#elif defined(__aarch64__)
#if defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP);
    if (!(hw & HWCAP_ASIMD)) return PN_SIMD_GENERIC;
    if (hw & HWCAP_ASIMDDP) return PN_SIMD_NEON_DOTPROD;
    return PN_SIMD_NEON;
#else
    return PN_SIMD_NEON; /* Advanced SIMD is part of the AArch64 base architecture */
#endif
#else
    return PN_SIMD_GENERIC;
#endif
}

static int pn_detected_level(void) {
    int level = __atomic_load_n(&pn_detected, __ATOMIC_ACQUIRE);
    if (level < 0) {
        level = pn_detect();
        __atomic_store_n(&pn_detected, level, __ATOMIC_RELEASE);
    }
    return level;
}

int pn_active_level(void) {
    int level = pn_detected_level();
    int limit = __atomic_load_n(&pn_limit, __ATOMIC_ACQUIRE);
    if (limit < level) level = limit;
    /* A cap that names another architecture's level means the next lower level of this one. */
#if defined(__aarch64__)
    if (level == PN_SIMD_AVX2_FMA) level = PN_SIMD_GENERIC;
#elif defined(__x86_64__)
    if (level == PN_SIMD_NEON || level == PN_SIMD_NEON_DOTPROD) level = PN_SIMD_AVX2_FMA;
#endif
    return level;
}

int pn_simd_level(void) { return pn_active_level(); }

const char *pn_simd_name(int level) {
    switch (level) {
        case PN_SIMD_GENERIC: return "generic";
        case PN_SIMD_AVX2_FMA: return "avx2+fma";
        case PN_SIMD_NEON: return "neon";
        case PN_SIMD_NEON_DOTPROD: return "neon+dotprod";
        case PN_SIMD_AVX512: return "avx512";
        default: return "unknown";
    }
}

void pn_set_simd_limit(int level) {
    /* The levels of one architecture are ordered (x86-64: generic < avx2+fma; aarch64: generic <
       neon < neon+dotprod), so a cap is a plain minimum. A negative cap means generic. */
    __atomic_store_n(&pn_limit, level < 0 ? 0 : level, __ATOMIC_RELEASE);
}

const char *pn_version(void) {
#if defined(__x86_64__)
    return PN_VERSION " (x86-64: generic, avx2+fma, avx512)";
#elif defined(__aarch64__)
    return PN_VERSION " (aarch64: generic, neon, neon+dotprod)";
#else
    return PN_VERSION " (generic)";
#endif
}

#define PN_KERNELS(LEVEL, SGEMM, PANELS, SGEMM1, PARTIAL, QGEMM, REQUANT, DW, DEINT2, ACT)          \
    {.level = (LEVEL), .sgemm_ukr = (SGEMM), .sgemm_panels = (PANELS), .sgemm_ukr1 = (SGEMM1),     \
     .rows_partial = (PARTIAL) & 1, .cols_partial = ((PARTIAL) >> 1) & 1,                          \
     .two_row_panels = (PARTIAL) >> 2, .qgemm_ukr = (QGEMM),                                        \
     .requant = (REQUANT), .dw_row = (DW), .deint2 = (DEINT2), .act = (ACT)}

static const pn_kernels pn_kernels_generic =
    PN_KERNELS(PN_SIMD_GENERIC, pn_sgemm_ukr_generic, 1, pn_sgemm_ukr_generic, 0, pn_qgemm_ukr_generic,
               pn_requant_generic, pn_dw_row_generic, pn_deint2_generic, pn_activation_generic);
#if defined(__x86_64__)
static const pn_kernels pn_kernels_avx2 =
    PN_KERNELS(PN_SIMD_AVX2_FMA, pn_sgemm_ukr_avx2, 1, pn_sgemm_ukr_avx2, 1, pn_qgemm_ukr_avx2,
               pn_requant_avx2, pn_dw_row_avx2, pn_deint2_avx2, pn_activation_avx2);
/* AVX-512: the fp32 GEMM on 12x32 tiles (two row panels), any edge in place (PARTIAL 7: rows,
   columns, two row panels); everything else as AVX2. */
static const pn_kernels pn_kernels_avx512 =
    PN_KERNELS(PN_SIMD_AVX512, pn_sgemm_ukr_avx512, 2, pn_sgemm_ukr_avx2, 7, pn_qgemm_ukr_avx2,
               pn_requant_avx2, pn_dw_row_avx2, pn_deint2_avx2, pn_activation_avx2);
#endif
#if defined(__aarch64__)
static const pn_kernels pn_kernels_neon =
    PN_KERNELS(PN_SIMD_NEON, pn_sgemm_ukr_neon, 1, pn_sgemm_ukr_neon, 0, pn_qgemm_ukr_neon,
               pn_requant_neon, pn_dw_row_neon, pn_deint2_neon, pn_activation_neon);
/* dotprod: the int8 GEMM with sdot; everything else as NEON. */
static const pn_kernels pn_kernels_dotprod =
    PN_KERNELS(PN_SIMD_NEON_DOTPROD, pn_sgemm_ukr_neon, 1, pn_sgemm_ukr_neon, 0, pn_qgemm_ukr_dotprod,
               pn_requant_neon, pn_dw_row_neon, pn_deint2_neon, pn_activation_neon);
#endif

const pn_kernels *pn_kernels_active(void) {
    int level = pn_active_level();
#if defined(__x86_64__)
    if (level >= PN_SIMD_AVX512) return &pn_kernels_avx512;
    if (level >= PN_SIMD_AVX2_FMA) return &pn_kernels_avx2;
#endif
#if defined(__aarch64__)
    if (level >= PN_SIMD_NEON_DOTPROD) return &pn_kernels_dotprod;
    if (level >= PN_SIMD_NEON) return &pn_kernels_neon;
#endif
    (void)level;
    return &pn_kernels_generic;
}

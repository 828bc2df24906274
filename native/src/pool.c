/* pool.c: a fixed pthread pool with a parallel-for in which the calling thread takes part.
 *
 * Why not OpenMP: libgomp's pool hangs in a child after fork(), and Python code forks (multiprocessing).
 * Here a pool notices that it was inherited across fork() (its owner pid differs) and then runs
 * its work on the calling thread alone, never touching the parent's locks or threads.
 *
 * Tasks are handed out through one atomic ticket, (generation << 32) | next task. The caller
 * makes the generation odd while it rewrites the job's description and even once it is complete,
 * so a worker's compare-and-swap on the ticket succeeds only if the description it read belongs to
 * that (even) generation and the job still has tasks. The caller waits for the tasks to be done,
 * never for workers to show up: where a core is busy with something else, a descheduled worker
 * costs nothing, the caller and the others take its share.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pn_internal.h"

struct pn_pool {
    int32_t threads; /* as asked; workers = threads - 1 */
    int32_t started; /* worker threads running */
    pid_t owner;
    pthread_mutex_t turn; /* callers take turns on the pool */
    pthread_mutex_t mu;
    pthread_cond_t wake; /* workers: a new job is posted (or stop) */
    pthread_cond_t done; /* caller: the last task of the job is done */
    int32_t stop;
    /* the current job; its fields are written before its ticket is published */
    pn_task_fn fn;
    void *ctx;
    int64_t count;
    uint64_t ticket; /* (generation << 32) | next task, atomic */
    int64_t finished; /* tasks of this job done, atomic */
    pthread_t *tids;
    unsigned char *ws; /* threads x PN_WS_BYTES, one private workspace per participant */
};

typedef struct {
    pn_pool *pool;
    int32_t index;
} pn_worker_arg;

/* Spinning a little before sleeping keeps the hand-off between consecutive kernels (a few
   microseconds apart while a model runs) free of futex wake-ups; after that the threads sleep. */
#define PN_SPIN_ROUNDS 2000

static inline void pn_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static inline uint32_t pn_generation(uint64_t ticket) { return (uint32_t)(ticket >> 32); }

/* Takes and runs tasks of generation `gen` until none is left (or another job is posted). */
static void pn_run_tasks(pn_pool *pool, uint32_t gen, unsigned char *ws) {
    /* A seqlock read: the description, then (after the fence) the ticket. If any of these loads
       saw the caller rewriting the description for a later job, the ticket shows that later
       (odd or newer) generation and the exchange below fails. */
    const pn_task_fn fn = __atomic_load_n(&pool->fn, __ATOMIC_RELAXED);
    void *const ctx = __atomic_load_n(&pool->ctx, __ATOMIC_RELAXED);
    const int64_t count = __atomic_load_n(&pool->count, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    uint64_t t = __atomic_load_n(&pool->ticket, __ATOMIC_ACQUIRE);
    for (;;) {
        if (pn_generation(t) != gen || (int64_t)(t & 0xFFFFFFFFu) >= count) return;
        /* A successful exchange proves the job is still this one and not complete (its task
           t is not done), so fn and ctx stay valid while it runs. */
        if (!__atomic_compare_exchange_n(&pool->ticket, &t, t + 1, 1, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
            continue;
        fn(ctx, (int64_t)(t & 0xFFFFFFFFu), ws, PN_WS_BYTES);
        if (__atomic_add_fetch(&pool->finished, 1, __ATOMIC_ACQ_REL) == count) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->mu);
        }
        t = __atomic_load_n(&pool->ticket, __ATOMIC_ACQUIRE);
    }
}

static void *pn_worker_main(void *p) {
    pn_worker_arg *arg = (pn_worker_arg *)p;
    pn_pool *pool = arg->pool;
    unsigned char *ws = pool->ws + (size_t)arg->index * PN_WS_BYTES;
    free(arg);
    uint32_t seen = 0;
    for (;;) {
        /* a new job: a generation other than the last one seen, and even (complete) */
#define PN_NO_NEW_JOB(g) ((g) == seen || ((g) & 1u))
        uint32_t gen = pn_generation(__atomic_load_n(&pool->ticket, __ATOMIC_ACQUIRE));
        for (int spin = 0; PN_NO_NEW_JOB(gen) && spin < PN_SPIN_ROUNDS; spin++) {
            pn_cpu_relax();
            gen = pn_generation(__atomic_load_n(&pool->ticket, __ATOMIC_ACQUIRE));
        }
        if (PN_NO_NEW_JOB(gen)) {
            pthread_mutex_lock(&pool->mu);
            for (;;) {
                gen = pn_generation(__atomic_load_n(&pool->ticket, __ATOMIC_ACQUIRE));
                if (pool->stop || !PN_NO_NEW_JOB(gen)) break;
                pthread_cond_wait(&pool->wake, &pool->mu);
            }
            pthread_mutex_unlock(&pool->mu);
        }
#undef PN_NO_NEW_JOB
        if (__atomic_load_n(&pool->stop, __ATOMIC_ACQUIRE)) return NULL;
        seen = gen;
        pn_run_tasks(pool, gen, ws);
    }
}

pn_pool *pn_pool_create(int32_t threads) {
    if (threads < 1 || threads > 256) return NULL;
    pn_pool *pool = (pn_pool *)calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->threads = threads;
    pool->owner = getpid();
    void *ws = NULL;
    if (posix_memalign(&ws, 4096, (size_t)threads * PN_WS_BYTES) != 0) {
        free(pool);
        return NULL;
    }
    pool->ws = (unsigned char *)ws;
    pool->tids = (pthread_t *)calloc((size_t)threads, sizeof(pthread_t));
    if (!pool->tids) {
        free(pool->ws);
        free(pool);
        return NULL;
    }
    pthread_mutex_init(&pool->turn, NULL);
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    /* Workers block every signal, so that signals (Ctrl-C for Python) reach the caller's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int ok = 1;
    for (int32_t i = 1; i < threads; i++) {
        pn_worker_arg *arg = (pn_worker_arg *)malloc(sizeof *arg);
        if (!arg) {
            ok = 0;
            break;
        }
        arg->pool = pool;
        arg->index = i;
        if (pthread_create(&pool->tids[pool->started], NULL, pn_worker_main, arg) != 0) {
            free(arg);
            ok = 0;
            break;
        }
        pool->started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!ok) {
        pn_pool_destroy(pool);
        return NULL;
    }
    return pool;
}

void pn_pool_destroy(pn_pool *pool) {
    if (!pool) return;
    if (pool->owner == getpid()) {
        pthread_mutex_lock(&pool->mu);
        __atomic_store_n(&pool->stop, 1, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mu);
        for (int32_t i = 0; i < pool->started; i++) pthread_join(pool->tids[i], NULL);
        pthread_cond_destroy(&pool->done);
        pthread_cond_destroy(&pool->wake);
        pthread_mutex_destroy(&pool->mu);
        pthread_mutex_destroy(&pool->turn);
    }
    /* In a child after fork() the workers and the state of the locks belong to the parent: only
       the memory is ours to free. */
    free(pool->tids);
    free(pool->ws);
    free(pool);
}

int32_t pn_pool_threads(const pn_pool *pool) { return pool ? pool->threads : 1; }

int32_t pn_pool_effective_threads(const pn_pool *pool) {
    if (!pool || pool->started == 0 || pool->owner != getpid()) return 1;
    return pool->started + 1;
}

void pn_parallel_for(pn_pool *pool, int64_t count, pn_task_fn fn, void *ctx) {
    if (count <= 0) return;
    if (!pool) {
        unsigned char stack_ws[PN_STACK_WS_BYTES] __attribute__((aligned(PN_ALIGN)));
        for (int64_t t = 0; t < count; t++) fn(ctx, t, stack_ws, sizeof stack_ws);
        return;
    }
    if (count == 1 || pn_pool_effective_threads(pool) == 1 || count > 0xFFFFFFFFLL) {
        for (int64_t t = 0; t < count; t++) fn(ctx, t, pool->ws, PN_WS_BYTES);
        return;
    }
    pthread_mutex_lock(&pool->turn);
    /* odd generation, no tasks: the description is being written */
    const uint32_t gen = pn_generation(__atomic_load_n(&pool->ticket, __ATOMIC_RELAXED)) + 2;
    __atomic_store_n(&pool->ticket, ((uint64_t)(gen - 1) << 32) | 0xFFFFFFFFu, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE); /* the odd ticket before any rewritten field */
    __atomic_store_n(&pool->fn, fn, __ATOMIC_RELAXED);
    __atomic_store_n(&pool->ctx, ctx, __ATOMIC_RELAXED);
    __atomic_store_n(&pool->count, count, __ATOMIC_RELAXED);
    __atomic_store_n(&pool->finished, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&pool->ticket, (uint64_t)gen << 32, __ATOMIC_RELEASE); /* even: open */
    pthread_mutex_lock(&pool->mu);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);

    pn_run_tasks(pool, gen, pool->ws);

    for (int spin = 0; spin < PN_SPIN_ROUNDS; spin++) {
        if (__atomic_load_n(&pool->finished, __ATOMIC_ACQUIRE) == count) break;
        pn_cpu_relax();
    }
    if (__atomic_load_n(&pool->finished, __ATOMIC_ACQUIRE) != count) {
        pthread_mutex_lock(&pool->mu);
        while (__atomic_load_n(&pool->finished, __ATOMIC_ACQUIRE) != count)
            pthread_cond_wait(&pool->done, &pool->mu);
        pthread_mutex_unlock(&pool->mu);
    }
    pthread_mutex_unlock(&pool->turn);
}

#include "pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "casca_err.h"

struct job {
    pool_job_fn fn;
    void *arg;
    struct job *next;
};

struct pool {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct job *head, *tail;
    unsigned queued, queue_limit, nthreads;
    bool stopping;
    pthread_t threads[];
};

static void *worker_main(void *arg)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->wake, &p->lock);
        struct job *j = p->head;
        if (!j)
            break; /* stopping and drained */
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->lock);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

struct pool *pool_create(unsigned threads, unsigned queue_limit)
{
    if (threads == 0)
        threads = 1;
    struct pool *p = calloc(1, sizeof(*p) + threads * sizeof(pthread_t));
    if (!p)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->queue_limit = queue_limit ? queue_limit : 4096;
    for (; p->nthreads < threads; p->nthreads++)
        if (pthread_create(&p->threads[p->nthreads], NULL, worker_main, p) != 0)
            break;
    if (p->nthreads == 0) {
        pool_destroy(p);
        return NULL;
    }
    return p;
}

int pool_submit(struct pool *p, pool_job_fn fn, void *arg)
{
    struct job *j = malloc(sizeof(*j));
    if (!j)
        return CASCA_ERR_NOMEM;
    *j = (struct job){.fn = fn, .arg = arg};
    pthread_mutex_lock(&p->lock);
    int err = p->stopping ? CASCA_ERR_UNAVAILABLE
              : p->queued >= p->queue_limit ? CASCA_ERR_FULL
                                            : CASCA_OK;
    if (err == CASCA_OK) {
        if (p->tail)
            p->tail->next = j;
        else
            p->head = j;
        p->tail = j;
        p->queued++;
        pthread_cond_signal(&p->wake);
    }
    pthread_mutex_unlock(&p->lock);
    if (err)
        free(j);
    return err;
}

void pool_destroy(struct pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

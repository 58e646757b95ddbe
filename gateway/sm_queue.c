/*
 * XEP-0198 counters and the unacknowledged queue; see sm_queue.h for the
 * rules Q1-Q3.
 */
#include "sm_queue.h"
#include "util.h"

#include <stdlib.h>

void sm_queue_init(struct sm_queue *q)
{
    q->head = q->tail = NULL;
    q->sent = q->acked = 0;
    q->len = q->bytes = 0;
}

static void drop_head(struct sm_queue *q)
{
    struct sm_item *it = q->head;
    q->head = it->next;
    if (!q->head)
        q->tail = NULL;
    q->len--;
    q->bytes -= it->len;
    free(it->data);
    free(it->ack);
    free(it);
}

void sm_queue_fini(struct sm_queue *q)
{
    while (q->head)
        drop_head(q);
}

void sm_queue_push(struct sm_queue *q, char *data, size_t len)
{
    sm_queue_push_ack(q, data, len, NULL);
}

void sm_queue_push_ack(struct sm_queue *q, char *data, size_t len, char *ack)
{
    struct sm_item *it = xcalloc(1, sizeof(*it));
    it->data = data;
    it->len = len;
    it->ack = ack;
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    q->len++;
    q->bytes += len;
    q->sent++;                                                              /* Q1 */
}

int sm_queue_ack(struct sm_queue *q, uint32_t h)
{
    return sm_queue_ack_each(q, h, NULL, NULL);
}

const char *sm_queue_head_ack(const struct sm_queue *q)
{
    return q->head ? q->head->ack : NULL;
}

int sm_queue_ack_each(struct sm_queue *q, uint32_t h, void (*acked)(void *ud, const char *ack), void *ud)
{
    /* Q1: the distance from the last ack, modulo 2^32. An h behind the last
     * one comes out huge, so one comparison covers both ends (Q3). */
    uint32_t n = h - q->acked;

    if (n > q->len)
        return SM_QUEUE_ERR_RANGE;                                          /* Q3 */
    for (uint32_t i = 0; i < n; i++) {                                      /* Q2 */
        if (acked && q->head->ack)
            acked(ud, q->head->ack);
        drop_head(q);
    }
    q->acked = h;
    return SM_QUEUE_OK;
}

char *sm_queue_pop(struct sm_queue *q, size_t *len)
{
    struct sm_item *it = q->head;
    char *data;

    if (!it)
        return NULL;
    data = it->data;
    *len = it->len;
    it->data = NULL;           /* now the caller's; drop_head frees the rest */
    drop_head(q);
    return data;
}

int sm_queue_parse_h(const char *text, uint32_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (!text || !*text)
        return SM_QUEUE_ERR_SYNTAX;
    for (i = 0; text[i]; i++) {
        if (text[i] < '0' || text[i] > '9' || i >= 10)
            return SM_QUEUE_ERR_SYNTAX;
        v = v * 10 + (uint64_t)(text[i] - '0');
    }
    if (v > UINT32_MAX)
        return SM_QUEUE_ERR_SYNTAX;
    *out = (uint32_t)v;
    return SM_QUEUE_OK;
}

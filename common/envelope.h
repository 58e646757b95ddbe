/*
 * The wire format between Parley processes: the single source of truth.
 *
 * Every message is a ZeroMQ multipart message carrying one or more
 * envelopes, in order:
 *   [identity]  added/removed by ROUTER sockets only (the peer's name)
 *   then, for each envelope:
 *   header      a flat JSON object {"v":2,"op":"...", fields...}; "p":1
 *               when a payload frame follows it
 *   [payload]   a stanza as serialized XML (namespace jabber:client implied
 *               on the top element), or for admin and storage replies the
 *               text or JSON named in the op's block.
 *
 * Why several envelopes per message: each ZeroMQ message costs a wakeup of
 * the I/O threads on both sides (a context switch each on this hardware),
 * which was a third of the CPU on the chat path. Senders queue envelopes in
 * an outbox (outbox.h) and send one message per peer per event-loop turn;
 * under load a message carries hundreds of envelopes, when idle one.
 * Envelopes of one message are handled in order, and the order between two
 * processes is the order they were queued in.
 *
 * Fields are a fixed, closed set (enum envelope_str, enum envelope_int): a
 * header value is a string or an integer, never nested, so the router reads
 * what it routes on without parsing XML (DESIGN.md "Inter-process messages").
 * Adding an optional field keeps "v"; changing or removing one bumps it. A
 * decoder accepts only ENVELOPE_VERSION; anything else is refused with
 * ENVELOPE_ERR_VERSION and the caller logs and drops it.
 *
 * Sockets: the router binds three ROUTER sockets (gateways, storage workers,
 * admin); each gateway and storage worker connects a DEALER whose identity
 * is its name ("gw1", "st2"); parleyctl connects a DEALER with a random one.
 *
 * ---------------------------------------------------------------------------
 * Liveness (gateway <-> router, storage <-> router)
 *
 * OP_HELLO      peer -> router
 *   name   str   peer name (also its socket identity)
 *   pid    int   process id, for logs and `parleyctl status`
 *   role   str   "gateway" | "storage"
 *   Router replies OP_HELLO. A gateway that gets OP_UNKNOWN_PEER sends
 *   OP_HELLO again and then OP_ANNOUNCE for each bound session.
 *
 * OP_HEARTBEAT  both ways, every router.heartbeat_ms
 *   A router that hears nothing from a peer for router.peer_timeout_ms
 *   drops it (a gateway's sessions end as if each connection dropped; a
 *   storage worker's in-flight jobs go to another worker). A peer that hears
 *   nothing from the router keeps its clients and buffers (bounded).
 *
 * OP_UNKNOWN_PEER  router -> peer: "I do not know you; say OP_HELLO".
 *
 * ---------------------------------------------------------------------------
 * Sessions (gateway -> router unless noted)
 *
 * OP_BIND
 *   conn   int   gateway-local connection id
 *   id     str   the client's bind iq id (echoed back)
 *   full   str   requested full JID; no resource part means "pick one"
 *   user   str   authenticated bare JID (UserID)
 *   class  str   device class of the login ("ios" for "1#alice"), if any;
 *                full's resource is then the class name
 *   Reply OP_BIND_RESULT { conn, id, full } or { conn, id, error } with
 *   error "conflict" | "not-allowed" | "resource-constraint". Under the
 *   kick_old policy the reply waits until the session it replaces has
 *   reported OP_CLOSED (or a short timeout passed).
 *
 * OP_ANNOUNCE   a gateway re-announcing a session after a router restart
 *   conn, full, user, class, prio (int, current presence priority; absent when
 *   no presence was sent), avail (int 1/0), since (int, unix time of bind)
 *   plus payload: the session's last broadcast presence stanza, if any.
 *   No reply; a conflicting announce is answered with OP_KICK.
 *
 * OP_CLOSED     the connection of a bound session ended
 *   conn   int
 *   full   str
 *   reason str   "closed" (client sent </stream:stream>), "dropped"
 *                (socket error/EOF), "error" (we sent a stream error),
 *                "kicked"
 *
 * OP_KICK       router -> gateway: end this session
 *   conn   int
 *   full   str
 *   error  str   stream error condition to send, e.g. "conflict",
 *                "policy-violation", "reset"
 *   text   str   optional human text for the stream error
 *
 * ---------------------------------------------------------------------------
 * Stanzas
 *
 * OP_STANZA     gateway -> router: a stanza from a bound client
 *   conn   int   connection it came on
 *   from   str   the session's full JID (stamped by the gateway; the client's
 *                own 'from' is never trusted, RFC 6120 §8.1.2.1)
 *   to     str   normalized 'to' ("" when absent: addressed to the account)
 *   kind   str   "message" | "presence" | "iq"
 *   type   str   the stanza's type attribute ("" when absent)
 *   id     str   the stanza's id attribute, if any
 *   ns     str   iq only: namespace of the first child element
 *   prio   int   presence only: <priority/> value, when present
 *   flags  int   message only: STANZA_FLAG_* below, so the router applies
 *                carbons rules without parsing
 *   payload: the stanza, with 'from' already set to the full JID
 *
 * OP_DELIVER    router -> gateway: write the payload to this connection
 *   conn   int
 *   ack    str   optional: report OP_ACKED with this value once the client
 *                has acknowledged the stanza (XEP-0198 <a/>) or, without
 *                stream management, once it was written to the socket;
 *                never when the connection is lost first (offline
 *                messages are deleted only then)
 *   payload: the stanza to write, ready for the client stream
 *
 * OP_UNDELIVERED gateway -> router: a message delivered to a session that
 *                ended for good without acknowledging it (XEP-0198); the
 *                router keeps it for offline delivery to the session's user
 *   conn   int
 *   full   str
 *   payload: the message as it was written to the client
 *
 * OP_ACKED      gateway -> router
 *   conn   int
 *   full   str   the session's full JID
 *   ack    str   the value of the delivered OP_DELIVER
 *
 * ---------------------------------------------------------------------------
 * Storage jobs (requester -> router -> worker -> router -> requester)
 *
 * OP_JOB        a request for a storage worker
 *   what   str   job kind, see below
 *   job    str   id unique per requester (the router adds its own when
 *                dispatching and maps the reply back)
 *   conn   int   gateway requests only: connection the answer is for
 *   user   str   the account (bare JID) the job is about
 *   + fields of the job kind
 *   The router answers OP_JOB_RESULT { job, error: "unavailable" } when no
 *   worker is connected within router.job_timeout_ms.
 *
 * OP_JOB_RESULT worker -> router -> requester
 *   job    str   the requester's id, echoed
 *   conn   int   echoed when present
 *   user   str   echoed
 *   error  str   absent on success; "not-found" | "conflict" |
 *                "bad-request" | "internal" | "unavailable"
 *   + result fields of the job kind
 *
 * Job kinds (what):
 *   "cred_get"    -> cred_sha1, cred_sha256 (scram_cred_encode form);
 *                    error "not-found" for an unknown user
 *   "user_add"    cred_sha1, cred_sha256 -> error "conflict" if it exists
 *   "user_del"    -> error "not-found" if absent
 *   "user_list"   -> payload: one bare JID per line, sorted
 *   "roster_get"  -> payload: <query xmlns='jabber:iq:roster' ver='N'> with
 *                    every <item jid name subscription [ask='subscribe']>
 *                    and its <group/>s, followed by one
 *                    <pending xmlns='urn:parley:internal' jid='...'/> per
 *                    inbound subscription request awaiting an answer
 *                    (RFC 6121 §3.1.3 "pending in"; never shown to
 *                    clients). ver is the user's roster version ("0" when
 *                    never written)
 *   "roster_put"  ver, payload: one <item/> as above -> the item (and its
 *                    groups) replaces any earlier one; users.roster_ver =
 *                    ver
 *   "roster_del"  jid, ver -> the item is removed; users.roster_ver = ver
 *   "pending_put" jid -> records a pending inbound subscription request
 *   "pending_del" jid -> forgets it
 *   "last_set"    since (unix time), text (status, may be absent) -> the
 *                    user's last activity (XEP-0012) replaces the old one
 *   "last_get"    -> since, text; error "not-found" if never recorded
 *   "offline_put" id (unique message id), stamp (int, unix microseconds the
 *                    server received it), limit (int, the per-user quota),
 *                    payload: the message -> stored; error
 *                    "resource-constraint" when the user already holds
 *                    limit messages. A repeat with the same id is a no-op.
 *                    As for archive_put, the payload is not parsed; only an
 *                    empty one or one holding a NUL byte is refused
 *   "offline_get" -> payload: <messages> with one <msg id='' stamp=''> per
 *                    stored message (stamp in unix microseconds), each
 *                    holding the message, oldest first; a stored message
 *                    that is not one well-formed element is left out (and
 *                    logged)
 *   "offline_del" payload: ids, one per line -> those messages are deleted
 *                    (the router sends the ids acknowledged in one event
 *                    loop turn together, router/offline_acks.c)
 *   "archive_put" id (archive id, unique per archive, sortable in time),
 *                    jid (the other party's bare JID), stamp, text
 *                    ("in" | "out": direction for the archive's owner
 *                    `user`), payload: the message -> appended; a repeat
 *                    with the same (user, id) is a no-op. The worker does
 *                    not parse the payload (the router made it); it refuses
 *                    only an empty one or one holding a NUL byte
 *   "archive_query" payload: <q with='' start='' end='' after='' before=''
 *                    max=''/> (each optional; start/end in unix
 *                    microseconds, inclusive; after/before are archive ids;
 *                    max the page size) -> payload: <results complete='0|1'
 *                    count='total matching'> with <r id='' stamp='' jid=''
 *                    dir=''>message</r> in time order (with before: the
 *                    last max before it, still in time order); a stored
 *                    message that is not well-formed is left out of the
 *                    page (and logged) but still counted
 *   "archive_purge" stamp -> every archive entry older than stamp is
 *                    deleted (all users); result text = how many
 *   Roster writes (roster_put/del, pending_put/del) for one user are sent
 *   one at a time by the router (each after the previous one's result);
 *   offline and archive writes may run on several workers at once: their
 *   order is that of their stamp and id, which the router assigns. Writes
 *   for an account that does not exist answer "not-found" and store
 *   nothing. archive_query: before='' asks for the last page; an after or
 *   before id not in the archive is "not-found"; max is capped at 1000.
 *
 * ---------------------------------------------------------------------------
 * Admin (parleyctl -> router)
 *
 * OP_ADMIN
 *   id     str   request id, echoed
 *   cmd    str   "status" | "sessions" | "user_add" | "user_del" |
 *                "user_list" | "kick" | "archive_purge"
 *   user   str   for user_*, sessions (optional filter) and kick
 *   full   str   for kick of one session
 *   cred_sha1, cred_sha256  for user_add (parleyctl derives the keys;
 *                the password never leaves parleyctl)
 *   text   str   kick reason; for archive_purge the XEP-0082 date before
 *                which archived messages are deleted
 * OP_ADMIN_RESULT
 *   id     str   echoed
 *   error  str   absent on success; human-readable reason otherwise
 *   payload: tab-separated text rows, first row the column names
 */
#ifndef PARLEY_ENVELOPE_H
#define PARLEY_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#define ENVELOPE_VERSION 2

/* OP_STANZA "flags" for messages. */
#define STANZA_FLAG_BODY 1        /* has a <body/> */
#define STANZA_FLAG_NO_COPY 2     /* <private xmlns='urn:xmpp:carbons:2'/> or <no-copy xmlns='urn:xmpp:hints'/> */
#define STANZA_FLAG_CARBON 4      /* is itself a carbon (<sent/>/<received/> of urn:xmpp:carbons:2) */
#define ENVELOPE_PEER_MAX 255 /* ZeroMQ identities are at most 255 bytes */

enum envelope_op {
    OP_NONE = 0,
    OP_HELLO,
    OP_HEARTBEAT,
    OP_UNKNOWN_PEER,
    OP_BIND,
    OP_BIND_RESULT,
    OP_ANNOUNCE,
    OP_CLOSED,
    OP_KICK,
    OP_STANZA,
    OP_DELIVER,
    OP_ACKED,
    OP_UNDELIVERED,
    OP_JOB,
    OP_JOB_RESULT,
    OP_ADMIN,
    OP_ADMIN_RESULT,
    OP_COUNT
};

/* String fields. Keep envelope.c's name table in the same order. */
enum envelope_str {
    ENV_NAME,
    ENV_ROLE,
    ENV_ID,
    ENV_FULL,
    ENV_USER,
    ENV_ERROR,
    ENV_REASON,
    ENV_FROM,
    ENV_TO,
    ENV_KIND,
    ENV_TYPE,
    ENV_NS,
    ENV_WHAT,
    ENV_JOB,
    ENV_CMD,
    ENV_TEXT,
    ENV_CRED_SHA1,
    ENV_CRED_SHA256,
    ENV_CLASS,
    ENV_JID,
    ENV_VER,
    ENV_ACK,
    ENV_STR_COUNT
};

/* Integer fields. Keep envelope.c's name table in the same order. */
enum envelope_int {
    ENV_CONN,
    ENV_PID,
    ENV_PRIO,
    ENV_AVAIL,
    ENV_SINCE,
    ENV_FLAGS,
    ENV_LIMIT,
    ENV_STAMP,
    ENV_INT_COUNT
};

enum {
    ENVELOPE_OK = 0,
    ENVELOPE_AGAIN = 1,          /* envelope_recv: nothing to read now */
    ENVELOPE_ERR_JSON = -1,      /* header is not a flat JSON object */
    ENVELOPE_ERR_VERSION = -2,   /* missing or unsupported "v" */
    ENVELOPE_ERR_OP = -3,        /* missing or unknown "op" */
    ENVELOPE_ERR_FRAMES = -4,    /* wrong number of frames */
    ENVELOPE_ERR_SOCKET = -5,    /* zmq_send/zmq_recv failed (errno kept) */
};

struct envelope {
    enum envelope_op op;
    char *str[ENV_STR_COUNT];     /* owned; NULL when absent */
    int64_t num[ENV_INT_COUNT];
    uint32_t has_num;             /* bit i set when num[i] is present */
    char *payload;                /* owned, NUL-terminated; NULL when absent */
    size_t payload_len;
};

struct envelope *envelope_new(enum envelope_op op);   /* caller owns */
void envelope_free(struct envelope *e);               /* NULL ok */
struct envelope *envelope_copy(const struct envelope *e); /* deep copy, caller owns */

/* Copies val (NULL clears the field). */
void envelope_set(struct envelope *e, enum envelope_str f, const char *val);
/* Borrowed pointer, valid until the field changes or e is freed; NULL if absent. */
const char *envelope_get(const struct envelope *e, enum envelope_str f);
void envelope_set_int(struct envelope *e, enum envelope_int f, int64_t v);
int envelope_has_int(const struct envelope *e, enum envelope_int f);
int64_t envelope_get_int(const struct envelope *e, enum envelope_int f, int64_t dflt);
/* Copies the payload. */
void envelope_set_payload(struct envelope *e, const char *data, size_t len);
/* Takes ownership of data (heap, NUL-terminated at data[len]). */
void envelope_take_payload(struct envelope *e, char *data, size_t len);

const char *envelope_op_name(enum envelope_op op);
const char *envelope_error_string(int code);

/* Header JSON <-> struct. encode appends to out (a struct buf *). */
struct buf;
void envelope_encode(const struct envelope *e, struct buf *out);
/* On success *out is a new envelope the caller owns (without payload). */
int envelope_decode(const char *json, size_t len, struct envelope **out);
/* The same; *has_payload says whether the header announces a payload frame. */
int envelope_decode_framed(const char *json, size_t len, struct envelope **out, int *has_payload);

/*
 * Sends *e alone in one message and consumes it; *e is NULL afterwards
 * whether or not the send succeeded. For request/reply tools (parleyctl) and
 * the admin socket; the processes' own links batch through outbox.h. peer is the destination identity on a ROUTER socket, NULL on a
 * DEALER. Never blocks: a full queue is ENVELOPE_ERR_SOCKET with errno
 * EAGAIN (the message is dropped; callers that cannot lose it must size the
 * high-water mark, see evzmq.h).
 */
int envelope_send(void *sock, const char *peer, struct envelope **e);

/* Reading side of one socket: where we are inside a multi-envelope message. */
struct envelope_reader {
    void *sock;
    int is_router;                       /* messages start with an identity frame */
    int in_message;                      /* more envelopes of this message follow */
    char peer[ENVELOPE_PEER_MAX + 1];    /* ROUTER: sender of the current message */
};

void envelope_reader_init(struct envelope_reader *rd, void *sock, int is_router);

/*
 * Receives the next envelope without blocking: the next one of the current
 * message, or the first of a new one. rd->peer names the sender (ROUTER).
 * Returns ENVELOPE_OK with *out set (caller owns), ENVELOPE_AGAIN when
 * nothing is queued, or a negative error after draining the rest of the bad
 * message (the caller logs it with rd->peer and carries on).
 */
int envelope_recv(struct envelope_reader *rd, struct envelope **out);

#endif

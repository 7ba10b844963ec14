/* A reader thread for streamed response bodies: recv, HTTP de-chunking and timestamps outside
 * the event loop.
 *
 * Why: however lean the per-read Python is, a client with a thousand paced streams on one core
 * is sometimes a read behind, and then the kernel hands two chunks over in one read stamped with
 * the later one's arrival: the first chunk's time (often the first token's) is lost. This thread
 * holds no GIL and does nothing but wait on epoll, read, de-chunk and record (bytes, arrival)
 * per read, so it is rarely behind even when the Python side is busy; the Python side replays
 * the recorded reads through its usual SSE path when the body ends (or when asked to, see
 * ``eager``), with every read's own arrival. A socket belongs to the thread only while its body
 * is read; the event loop owns it the rest of the time (request, head, keep-alive).
 *
 * Arrival is the kernel's receive stamp (SO_TIMESTAMPNS, CLOCK_REALTIME) converted to the
 * perf_counter clock (CLOCK_MONOTONIC on Linux), else the thread's read time.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE 65536
#define REFRESH_S 0.1
#define POLL_S 0.0005       /* the least time between two looks at the sockets (see run) */
#define DRAIN_AT (1 << 20)  /* body bytes held before the Python side is asked to take them */
#define STOP_KEY UINT64_MAX
#define PROTO_ERR (-1)      /* err: bad chunked framing */

enum { S_SIZE, S_EXT, S_SIZE_LF, S_DATA, S_DATA_CR, S_DATA_LF, S_TRAIL, S_TRAIL_LINE,
       S_TRAIL_LF, S_LAST_LF, S_DONE };

typedef struct {
    size_t end;                    /* its payload's end offset in body */
    double arrival;
} Read;

typedef struct {
    int fd, active, state, digits, eager, queued, finished, err, eof, has_arrival;
    uint64_t size;                 /* chunk size being read, or bytes left of its payload */
    char *body;                    /* de-chunked payload bytes not yet taken */
    size_t blen, bcap;
    Read *reads;                   /* per read that added payload */
    size_t nreads, rcap;
    char *extra;                   /* bytes after the last chunk (a server that sent more) */
    size_t elen;
    double last, arrival;          /* last read's time and arrival (perf_counter clock) */
} Stream;

typedef struct {
    PyObject_HEAD
    int ep, efd, stopfd, started;
    pid_t pid;                     /* the process whose thread it is (a fork child has none) */
    pthread_t thread;
    pthread_mutex_t lock;
    Stream *streams;
    size_t nstreams;
    uint32_t *queue;               /* slots to hand to the Python side, in order */
    size_t qlen, qcap;
    double offset, taken_at;       /* CLOCK_REALTIME minus CLOCK_MONOTONIC, when taken */
    char rbuf[READ_SIZE];
} Pump;

static double
ts_of(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The clock offset from the tightest of three bracketed readings (as kernelstamp.py). */
static void
refresh_offset(Pump *p, double now)
{
    double best_width = 1e300, best = 0.0;
    for (int i = 0; i < 3; i++) {
        double a = ts_of(CLOCK_MONOTONIC), r = ts_of(CLOCK_REALTIME), b = ts_of(CLOCK_MONOTONIC);
        if (b - a < best_width) {
            best_width = b - a;
            best = r - (a + b) / 2;
        }
    }
    p->offset = best;
    p->taken_at = now;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int
grow(void **buf, size_t *cap, size_t need, size_t item)
{
    if (need <= *cap) return 0;
    size_t cap2 = *cap ? *cap : 16;
    while (cap2 < need) cap2 *= 2;
    void *b = realloc(*buf, cap2 * item);
    if (b == NULL) return -1;
    *buf = b;
    *cap = cap2;
    return 0;
}

/* Run bytes through the chunked-body state machine; payload goes to s->body. Returns 0, or -1
 * with s->err set. What follows the last chunk's empty line is kept in s->extra. */
static int
dechunk(Stream *s, const char *d, size_t n)
{
    size_t i = 0;
    while (i < n) {
        char c = d[i];
        switch (s->state) {
        case S_SIZE: {
            int v = hexval(c);
            if (v >= 0 && s->digits < 15) {
                s->size = s->size * 16 + (uint64_t)v;
                s->digits++;
            } else if (s->digits && (c == ';' || c == ' ' || c == '\t')) {
                s->state = S_EXT;
            } else if (s->digits && c == '\r') {
                s->state = S_SIZE_LF;
            } else {
                goto bad;
            }
            i++;
            break;
        }
        case S_EXT:
            if (c == '\r') s->state = S_SIZE_LF;
            i++;
            break;
        case S_SIZE_LF:
            if (c != '\n') goto bad;
            s->state = s->size ? S_DATA : S_TRAIL;
            i++;
            break;
        case S_DATA: {
            size_t take = n - i;
            if ((uint64_t)take > s->size) take = (size_t)s->size;
            if (grow((void **)&s->body, &s->bcap, s->blen + take, 1) < 0) {
                s->err = ENOMEM;
                return -1;
            }
            memcpy(s->body + s->blen, d + i, take);
            s->blen += take;
            s->size -= take;
            i += take;
            if (s->size == 0) s->state = S_DATA_CR;
            break;
        }
        case S_DATA_CR:
            if (c != '\r') goto bad;
            s->state = S_DATA_LF;
            i++;
            break;
        case S_DATA_LF:
            if (c != '\n') goto bad;
            s->state = S_SIZE;
            s->size = 0;
            s->digits = 0;
            i++;
            break;
        case S_TRAIL:  /* start of a trailer line, or the empty line that ends the body */
            s->state = c == '\r' ? S_LAST_LF : S_TRAIL_LINE;
            i++;
            break;
        case S_TRAIL_LINE:
            if (c == '\r') s->state = S_TRAIL_LF;
            i++;
            break;
        case S_TRAIL_LF:
            if (c != '\n') goto bad;
            s->state = S_TRAIL;
            i++;
            break;
        case S_LAST_LF:
            if (c != '\n') goto bad;
            s->state = S_DONE;
            i++;
            break;
        case S_DONE: {
            size_t rest = n - i;
            s->extra = malloc(rest);
            if (s->extra == NULL) {
                s->err = ENOMEM;
                return -1;
            }
            memcpy(s->extra, d + i, rest);
            s->elen = rest;
            return 0;
        }
        }
    }
    return 0;
bad:
    s->err = PROTO_ERR;
    return -1;
}

/* Record the read that brought body[old:] (if it brought any payload). */
static int
note_read(Stream *s, size_t old, double arrival)
{
    if (s->blen == old) return 0;
    if (grow((void **)&s->reads, &s->rcap, s->nreads + 1, sizeof(Read)) < 0) return -1;
    s->reads[s->nreads].end = s->blen;
    s->reads[s->nreads].arrival = arrival;
    s->nreads++;
    return 0;
}

static void
enqueue(Pump *p, uint32_t slot)
{
    Stream *s = &p->streams[slot];
    if (s->queued) return;
    if (grow((void **)&p->queue, &p->qcap, p->qlen + 1, sizeof(uint32_t)) < 0) return;
    p->queue[p->qlen++] = slot;
    s->queued = 1;
}

/* One read of one stream (the lock held); returns whether the Python side must be told. */
static int
read_one(Pump *p, Stream *s)
{
    struct iovec iov = {p->rbuf, READ_SIZE};
    union {
        char buf[CMSG_SPACE(sizeof(struct timespec)) * 2];
        struct cmsghdr align;
    } control;
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    ssize_t n = recvmsg(s->fd, &msg, MSG_DONTWAIT);
    double now = ts_of(CLOCK_MONOTONIC);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    if (n <= 0) {
        if (n < 0) s->err = errno;
        else s->eof = 1;
        s->finished = 1;
        s->last = now;
        return 1;
    }
    double arrival = now;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS
                && c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            if (now - p->taken_at > REFRESH_S) refresh_offset(p, now);
            double a = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 - p->offset;
            if (now - 30.0 < a && a <= now) arrival = a;
            break;
        }
    }
    s->last = now;
    s->arrival = arrival;
    s->has_arrival = 1;
    size_t old = s->blen;
    if (dechunk(s, p->rbuf, (size_t)n) < 0 || note_read(s, old, arrival) < 0) {
        if (!s->err) s->err = ENOMEM;
        s->finished = 1;
        return 1;
    }
    if (s->state == S_DONE) {
        s->finished = 1;
        return 1;
    }
    return (s->eager && s->blen > old) || s->blen >= DRAIN_AT;
}

static void *
run(void *arg)
{
    Pump *p = arg;
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(p->ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            return NULL;
        }
        double began = ts_of(CLOCK_MONOTONIC);
        int notify = 0;
        pthread_mutex_lock(&p->lock);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == STOP_KEY) {
                pthread_mutex_unlock(&p->lock);
                return NULL;
            }
            uint32_t slot = (uint32_t)evs[i].data.u64;
            if (slot >= p->nstreams) continue;
            Stream *s = &p->streams[slot];
            if (!s->active || s->finished) continue;  /* removed, or ended, since the wait */
            if (read_one(p, s)) {
                if (s->finished) epoll_ctl(p->ep, EPOLL_CTL_DEL, s->fd, NULL);
                enqueue(p, slot);
                notify = 1;
            }
        }
        pthread_mutex_unlock(&p->lock);
        if (notify) {
            uint64_t one = 1;
            ssize_t w = write(p->efd, &one, sizeof(one));
            (void)w;
        }
        /* Wait out the rest of POLL_S before looking again: the reads that come meanwhile are
         * taken in one pass (one wake-up of this thread and of the event loop for many), and
         * a chunk still keeps its own stamp unless the next one on its socket comes sooner. */
        double left = POLL_S - (ts_of(CLOCK_MONOTONIC) - began);
        if (left > 0) {
            struct timespec nap = {0, (long)(left * 1e9)};
            nanosleep(&nap, NULL);
        }
    }
}

static void
free_stream(Stream *s)
{
    free(s->body);
    free(s->reads);
    free(s->extra);
    memset(s, 0, sizeof(*s));
    s->fd = -1;
}

static int
Pump_init(Pump *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "", kwlist)) return -1;
    if (self->started) {
        PyErr_SetString(PyExc_RuntimeError, "Pump already initialised");
        return -1;
    }
    self->ep = epoll_create1(EPOLL_CLOEXEC);
    self->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->ep < 0 || self->efd < 0 || self->stopfd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = STOP_KEY};
    if (epoll_ctl(self->ep, EPOLL_CTL_ADD, self->stopfd, &ev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    pthread_mutex_init(&self->lock, NULL);
    self->taken_at = -1e300;
    int rc = pthread_create(&self->thread, NULL, run, self);
    if (rc != 0) {
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        pthread_mutex_destroy(&self->lock);
        return -1;
    }
    self->started = 1;
    self->pid = getpid();
    return 0;
}

/* Stop and join the thread (it never takes the GIL, so joining with it held is safe). */
static void
stop_thread(Pump *self)
{
    if (!self->started) return;
    if (self->pid != getpid()) {  /* forked: the thread and its memory are the parent's */
        self->started = 0;
        return;
    }
    uint64_t one = 1;
    ssize_t w = write(self->stopfd, &one, sizeof(one));
    (void)w;
    Py_BEGIN_ALLOW_THREADS
    pthread_join(self->thread, NULL);
    Py_END_ALLOW_THREADS
    self->started = 0;
    for (size_t i = 0; i < self->nstreams; i++) free_stream(&self->streams[i]);
    free(self->streams);
    free(self->queue);
    self->streams = NULL;
    self->queue = NULL;
    self->nstreams = self->qlen = self->qcap = 0;
    pthread_mutex_destroy(&self->lock);
    close(self->ep);
    close(self->efd);
    close(self->stopfd);
    self->ep = self->efd = self->stopfd = -1;
}

static void
Pump_dealloc(Pump *self)
{
    stop_thread(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
not_running(void)
{
    PyErr_SetString(PyExc_RuntimeError, "the pump is closed");
    return NULL;
}

static PyObject *
Pump_add(Pump *self, PyObject *args)
{
    int fd, eager;
    Py_buffer pending;
    double arrival;
    if (!PyArg_ParseTuple(args, "iy*dp", &fd, &pending, &arrival, &eager)) return NULL;
    if (!self->started) {
        PyBuffer_Release(&pending);
        return not_running();
    }
    pthread_mutex_lock(&self->lock);
    size_t slot = 0;
    while (slot < self->nstreams && self->streams[slot].active) slot++;
    if (slot == self->nstreams) {
        size_t cap = self->nstreams ? self->nstreams * 2 : 64;
        Stream *st = realloc(self->streams, cap * sizeof(Stream));
        if (st == NULL) {
            pthread_mutex_unlock(&self->lock);
            PyBuffer_Release(&pending);
            return PyErr_NoMemory();
        }
        for (size_t i = self->nstreams; i < cap; i++) {
            memset(&st[i], 0, sizeof(Stream));
            st[i].fd = -1;
        }
        self->streams = st;
        self->nstreams = cap;
    }
    Stream *s = &self->streams[slot];
    free_stream(s);
    s->fd = fd;
    s->active = 1;
    s->eager = eager;
    s->last = ts_of(CLOCK_MONOTONIC);
    int notify = 0;
    if (pending.len) {  /* the start of a chunk the event loop already read */
        if (dechunk(s, pending.buf, (size_t)pending.len) < 0
                || note_read(s, 0, arrival) < 0 || s->state == S_DONE) {
            if (!s->err && s->state != S_DONE) s->err = ENOMEM;
            s->finished = 1;
        }
        notify = s->finished || (eager && s->blen);
    }
    PyBuffer_Release(&pending);
    if (!s->finished) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = slot};
        if (epoll_ctl(self->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            int e = errno;
            free_stream(s);
            pthread_mutex_unlock(&self->lock);
            errno = e;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    if (notify) enqueue(self, (uint32_t)slot);
    pthread_mutex_unlock(&self->lock);
    if (notify) {
        uint64_t one = 1;
        ssize_t w = write(self->efd, &one, sizeof(one));
        (void)w;
    }
    return PyLong_FromSize_t(slot);
}

static Stream *
stream_of(Pump *self, PyObject *arg, size_t *slot)
{
    *slot = PyLong_AsSize_t(arg);
    if (*slot == (size_t)-1 && PyErr_Occurred()) return NULL;
    if (*slot >= self->nstreams || !self->streams[*slot].active) {
        PyErr_SetString(PyExc_KeyError, "no such stream in the pump");
        return NULL;
    }
    return &self->streams[*slot];
}

/* Whether a read's payload is exactly one single-line SSE event "data: X\n\n" (X not [DONE],
 * no CR or LF in it): a paced stream's usual read. */
static int
one_event(const char *p, size_t n)
{
    if (n < 8 || memcmp(p, "data: ", 6) != 0 || p[n - 2] != '\n' || p[n - 1] != '\n') return 0;
    const char *x = p + 6;
    size_t xn = n - 8;
    if (memchr(x, '\n', xn) || memchr(x, '\r', xn)) return 0;
    return !(xn == 6 && memcmp(x, "[DONE]", 6) == 0);
}

/* (reads, finished, err, eof, extra, last, arrival) of a stream, the lock held: the reads
 * recorded since the last take as (data, arrival, event) triples — event true: data is the X
 * of a read that was one "data: X" event (see one_event), else the read's payload — and its
 * state; the reads and the extra bytes are handed over (every body byte belongs to a read). */
static PyObject *
taken_of(Stream *s)
{
    PyObject *reads = PyList_New((Py_ssize_t)s->nreads);
    PyObject *extra = PyBytes_FromStringAndSize(s->extra ? s->extra : "", (Py_ssize_t)s->elen);
    PyObject *arrival = s->has_arrival ? PyFloat_FromDouble(s->arrival) : Py_NewRef(Py_None);
    if (reads == NULL || extra == NULL || arrival == NULL) goto fail;
    size_t from = 0;
    for (size_t i = 0; i < s->nreads; i++) {
        Read *r = &s->reads[i];
        const char *d = s->body + from;
        size_t n = r->end - from;
        int ev = one_event(d, n);
        PyObject *pair = ev ? Py_BuildValue("(y#dO)", d + 6, (Py_ssize_t)(n - 8), r->arrival,
                                            Py_True)
                            : Py_BuildValue("(y#dO)", d, (Py_ssize_t)n, r->arrival, Py_False);
        if (pair == NULL) goto fail;
        PyList_SET_ITEM(reads, (Py_ssize_t)i, pair);
        from = r->end;
    }
    s->blen = 0;
    s->nreads = 0;
    free(s->extra);
    s->extra = NULL;
    s->elen = 0;
    return Py_BuildValue("(NiiiNdN)", reads, s->finished, s->err, s->eof, extra, s->last,
                         arrival);
fail:
    Py_XDECREF(reads);
    Py_XDECREF(extra);
    Py_XDECREF(arrival);
    return NULL;
}

/* take(slot) -> (reads, finished, err, eof, extra, last, arrival), see taken_of. */
static PyObject *
Pump_take(Pump *self, PyObject *arg)
{
    if (!self->started) return not_running();
    pthread_mutex_lock(&self->lock);
    size_t slot;
    Stream *s = stream_of(self, arg, &slot);
    PyObject *res = s ? taken_of(s) : NULL;
    pthread_mutex_unlock(&self->lock);
    return res;
}

static PyObject *
Pump_last(Pump *self, PyObject *arg)
{
    if (!self->started) return not_running();
    pthread_mutex_lock(&self->lock);
    size_t slot;
    Stream *s = stream_of(self, arg, &slot);
    double last = s ? s->last : 0.0;
    pthread_mutex_unlock(&self->lock);
    return s ? PyFloat_FromDouble(last) : NULL;
}

/* remove(slot): the socket goes back to its owner; whatever was not taken is dropped. */
static PyObject *
Pump_remove(Pump *self, PyObject *arg)
{
    if (!self->started) return not_running();
    pthread_mutex_lock(&self->lock);
    size_t slot;
    Stream *s = stream_of(self, arg, &slot);
    if (s != NULL) {
        if (!s->finished) epoll_ctl(self->ep, EPOLL_CTL_DEL, s->fd, NULL);
        free_stream(s);
        for (size_t i = 0; i < self->qlen; i++) {  /* a queued notice of it is stale now */
            if (self->queue[i] == slot) {
                memmove(self->queue + i, self->queue + i + 1,
                        (self->qlen - i - 1) * sizeof(uint32_t));
                self->qlen--;
                break;
            }
        }
    }
    pthread_mutex_unlock(&self->lock);
    if (s == NULL) return NULL;
    Py_RETURN_NONE;
}

/* ready() -> list of slots with something to take (in the order the thread found it). */
static PyObject *
Pump_ready(Pump *self, PyObject *noargs)
{
    if (!self->started) return not_running();
    uint64_t count;
    ssize_t r = read(self->efd, &count, sizeof(count));
    (void)r;
    pthread_mutex_lock(&self->lock);
    PyObject *out = PyList_New((Py_ssize_t)self->qlen);
    if (out != NULL) {
        for (size_t i = 0; i < self->qlen; i++) {
            uint32_t slot = self->queue[i];
            self->streams[slot].queued = 0;
            PyObject *v = PyLong_FromUnsignedLong(slot);
            if (v == NULL) {
                Py_CLEAR(out);
                break;
            }
            PyList_SET_ITEM(out, (Py_ssize_t)i, v);
        }
        if (out != NULL) self->qlen = 0;
    }
    pthread_mutex_unlock(&self->lock);
    return out;
}

/* drain() -> [(slot, reads, finished, err, eof, extra, last, arrival)]: what ready() and a
 * take() of each would give, in one call (one GIL-held pass per wake-up of the event loop). */
static PyObject *
Pump_drain(Pump *self, PyObject *noargs)
{
    if (!self->started) return not_running();
    uint64_t count;
    ssize_t r = read(self->efd, &count, sizeof(count));
    (void)r;
    pthread_mutex_lock(&self->lock);
    PyObject *out = PyList_New((Py_ssize_t)self->qlen);
    size_t i = 0;
    for (; out != NULL && i < self->qlen; i++) {
        uint32_t slot = self->queue[i];
        Stream *s = &self->streams[slot];
        s->queued = 0;
        PyObject *t = taken_of(s);
        PyObject *entry = t ? PyTuple_New(8) : NULL;
        PyObject *key = entry ? PyLong_FromUnsignedLong(slot) : NULL;
        if (key == NULL) {
            Py_XDECREF(t);
            Py_XDECREF(entry);
            Py_CLEAR(out);
            break;
        }
        PyTuple_SET_ITEM(entry, 0, key);
        for (Py_ssize_t k = 0; k < 7; k++)
            PyTuple_SET_ITEM(entry, k + 1, Py_NewRef(PyTuple_GET_ITEM(t, k)));
        Py_DECREF(t);
        PyList_SET_ITEM(out, (Py_ssize_t)i, entry);
    }
    /* what was not handed over (an error part-way) stays queued for the next call */
    memmove(self->queue, self->queue + i, (self->qlen - i) * sizeof(uint32_t));
    self->qlen -= i;
    pthread_mutex_unlock(&self->lock);
    return out;
}

static PyObject *
Pump_fileno(Pump *self, PyObject *noargs)
{
    if (!self->started) return not_running();
    return PyLong_FromLong(self->efd);
}

static PyObject *
Pump_close(Pump *self, PyObject *noargs)
{
    stop_thread(self);
    Py_RETURN_NONE;
}

static PyMethodDef Pump_methods[] = {
    {"add", (PyCFunction)Pump_add, METH_VARARGS,
     "add(fd, pending, arrival, eager) -> slot: read fd's chunked body from here on; pending: "
     "body bytes already read (arrival: when); eager: tell of every read, not only the end"},
    {"take", (PyCFunction)Pump_take, METH_O,
     "take(slot) -> (reads, finished, err, eof, extra, last, arrival)"},
    {"last", (PyCFunction)Pump_last, METH_O, "last(slot) -> perf_counter time of its last read"},
    {"remove", (PyCFunction)Pump_remove, METH_O, "remove(slot): hand the socket back"},
    {"ready", (PyCFunction)Pump_ready, METH_NOARGS, "ready() -> slots with something to take"},
    {"drain", (PyCFunction)Pump_drain, METH_NOARGS,
     "drain() -> [(slot, reads, finished, err, eof, extra, last, arrival)] of every ready slot"},
    {"fileno", (PyCFunction)Pump_fileno, METH_NOARGS, "the eventfd readable when ready()"},
    {"close", (PyCFunction)Pump_close, METH_NOARGS, "stop the thread and drop every stream"},
    {NULL}
};

static PyTypeObject PumpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "servemark.client._pump.Pump",
    .tp_doc = "Pump(): a reader thread for chunked response bodies",
    .tp_basicsize = sizeof(Pump),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Pump_init,
    .tp_dealloc = (destructor)Pump_dealloc,
    .tp_methods = Pump_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pump", "A reader thread for streamed response bodies.", -1, NULL,
};

PyMODINIT_FUNC
PyInit__pump(void)
{
    if (PyType_Ready(&PumpType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Pump", (PyObject *)&PumpType) < 0
            || PyModule_AddIntConstant(m, "PROTO_ERR", PROTO_ERR) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

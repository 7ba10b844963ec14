/* A reader thread for a client's plain-TCP connections: recv and timestamps outside the event
 * loop.
 *
 * Why: however lean the per-read Python is, a client with many paced streams on one core is
 * sometimes a read behind, and then the kernel hands two chunks over in one read stamped with
 * the later one's arrival: the first chunk's time (often the first token's) is lost. This thread
 * holds no GIL and does nothing but wait on epoll, read and record each read with its arrival,
 * so it is rarely behind even while the Python side is busy. It looks at the sockets at most
 * every POLL_S (a chunk still keeps its own stamp unless the next one on its socket comes
 * sooner), and the event loop takes everything read since the last look in one call, each read
 * as it came: the connection's Python code then treats it as its own read (see
 * servemark.client.pump). A socket belongs to the thread from connect to close; the event loop
 * only writes to it.
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

#include "_readcommon.h"

#define READ_SIZE 65536
#define POLL_S 0.0005       /* the least time between two looks at the sockets (see run) */
#define STOP_KEY UINT64_MAX

typedef struct {
    size_t end;                    /* its bytes' end offset in the stream's buffer */
    double arrival;
} Read;

typedef struct {
    int fd, active, queued, finished, err, eof;
    char *buf;                     /* bytes read and not yet taken */
    size_t blen, bcap;
    Read *reads;                   /* one per read, in order */
    size_t nreads, rcap;
    double last;                   /* time of the last read (perf_counter clock) */
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
    ClockOffset clock;
    char rbuf[READ_SIZE];
} Pump;

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

static void
enqueue(Pump *p, uint32_t slot)
{
    Stream *s = &p->streams[slot];
    if (s->queued) return;
    if (grow((void **)&p->queue, &p->qcap, p->qlen + 1, sizeof(uint32_t)) < 0) return;
    p->queue[p->qlen++] = slot;
    s->queued = 1;
}

/* One read of one socket (the lock held); returns whether the Python side must be told. */
static int
read_one(Pump *p, Stream *s)
{
    double now, arrival;
    int stamped;
    ssize_t n = recv_stamped(s->fd, p->rbuf, READ_SIZE, MSG_DONTWAIT, &p->clock, &now, &arrival,
                             &stamped);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    s->last = now;
    if (n <= 0) {
        if (n < 0) s->err = errno;
        else s->eof = 1;
        s->finished = 1;
        return 1;
    }
    if (!stamped) arrival = now;
    if (grow((void **)&s->buf, &s->bcap, s->blen + (size_t)n, 1) < 0
            || grow((void **)&s->reads, &s->rcap, s->nreads + 1, sizeof(Read)) < 0) {
        s->err = ENOMEM;
        s->finished = 1;
        return 1;
    }
    memcpy(s->buf + s->blen, p->rbuf, (size_t)n);
    s->blen += (size_t)n;
    s->reads[s->nreads].end = s->blen;
    s->reads[s->nreads].arrival = arrival;
    s->nreads++;
    return 1;
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
         * taken in one pass (one wake-up of this thread and of the event loop for many). */
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
    free(s->buf);
    free(s->reads);
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
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = STOP_KEY};
    if (self->ep < 0 || self->efd < 0 || self->stopfd < 0
            || epoll_ctl(self->ep, EPOLL_CTL_ADD, self->stopfd, &ev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    pthread_mutex_init(&self->lock, NULL);
    self->clock.taken_at = -1e300;
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

/* Stop and join the thread (it never takes the GIL, so waiting for it cannot deadlock). */
static void
stop_thread(Pump *self)
{
    if (!self->started) return;
    self->started = 0;
    if (self->pid != getpid()) return;  /* forked: the thread and its memory are the parent's */
    uint64_t one = 1;
    ssize_t w = write(self->stopfd, &one, sizeof(one));
    (void)w;
    Py_BEGIN_ALLOW_THREADS
    pthread_join(self->thread, NULL);
    Py_END_ALLOW_THREADS
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
Pump_add(Pump *self, PyObject *arg)
{
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred()) return NULL;
    if (!self->started) return not_running();
    pthread_mutex_lock(&self->lock);
    size_t slot = 0;
    while (slot < self->nstreams && self->streams[slot].active) slot++;
    if (slot == self->nstreams) {
        size_t cap = self->nstreams ? self->nstreams * 2 : 64;
        Stream *st = realloc(self->streams, cap * sizeof(Stream));
        if (st == NULL) {
            pthread_mutex_unlock(&self->lock);
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
    s->fd = (int)fd;
    s->active = 1;
    s->last = ts_of(CLOCK_MONOTONIC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = slot};
    if (epoll_ctl(self->ep, EPOLL_CTL_ADD, (int)fd, &ev) < 0) {
        int e = errno;
        free_stream(s);
        pthread_mutex_unlock(&self->lock);
        errno = e;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    pthread_mutex_unlock(&self->lock);
    return PyLong_FromSize_t(slot);
}

/* (reads, finished, err, eof, last) of a stream, the lock held: the reads since the last take
 * as (data, arrival, event) triples — event true: the read was exactly one HTTP chunk holding
 * one single-line SSE "data: X" event (see chunk_event) and data is X; else data is the read —
 * and its state; the reads are handed over. */
static PyObject *
taken_of(Stream *s)
{
    PyObject *reads = PyList_New((Py_ssize_t)s->nreads);
    if (reads == NULL) return NULL;
    size_t from = 0;
    for (size_t i = 0; i < s->nreads; i++) {
        Read *r = &s->reads[i];
        const char *d = s->buf + from, *x;
        Py_ssize_t n = (Py_ssize_t)(r->end - from), xn, used;
        int ev = chunk_event(d, n, &x, &xn, &used) && used == n;
        PyObject *item = ev ? Py_BuildValue("(y#dO)", x, xn, r->arrival, Py_True)
                            : Py_BuildValue("(y#dO)", d, n, r->arrival, Py_False);
        if (item == NULL) {
            Py_DECREF(reads);
            return NULL;
        }
        PyList_SET_ITEM(reads, (Py_ssize_t)i, item);
        from = r->end;
    }
    s->blen = 0;
    s->nreads = 0;
    return Py_BuildValue("(Niiid)", reads, s->finished, s->err, s->eof, s->last);
}

static Stream *
stream_of(Pump *self, PyObject *arg, size_t *slot)
{
    *slot = PyLong_AsSize_t(arg);
    if (*slot == (size_t)-1 && PyErr_Occurred()) return NULL;
    if (*slot >= self->nstreams || !self->streams[*slot].active) {
        PyErr_SetString(PyExc_KeyError, "no such socket in the pump");
        return NULL;
    }
    return &self->streams[*slot];
}

/* take(slot) -> (reads, finished, err, eof, last), see taken_of. */
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

/* remove(slot): the thread reads the socket no more (none of its reads is under way once this
 * returns); what was not taken is dropped. The caller closes the socket after this. */
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

/* drain() -> [(slot, reads, finished, err, eof, last)] of every socket with something new, in
 * the order the thread found it: one GIL-held pass per wake-up of the event loop. */
static PyObject *
Pump_drain(Pump *self, PyObject *Py_UNUSED(noargs))
{
    if (!self->started) return not_running();
    uint64_t count;
    ssize_t r = read(self->efd, &count, sizeof(count));
    (void)r;
    pthread_mutex_lock(&self->lock);
    PyObject *out = PyList_New(0);
    size_t i = 0;
    for (; out != NULL && i < self->qlen; i++) {
        uint32_t slot = self->queue[i];
        Stream *s = &self->streams[slot];
        s->queued = 0;
        PyObject *t = taken_of(s);
        PyObject *entry = t ? Py_BuildValue("(IO)", slot, t) : NULL;
        Py_XDECREF(t);
        if (entry == NULL || PyList_Append(out, entry) < 0) {
            Py_XDECREF(entry);
            Py_CLEAR(out);
            i++;
            break;
        }
        Py_DECREF(entry);
    }
    memmove(self->queue, self->queue + i, (self->qlen - i) * sizeof(uint32_t));
    self->qlen -= i;
    pthread_mutex_unlock(&self->lock);
    return out;
}

static PyObject *
Pump_fileno(Pump *self, PyObject *Py_UNUSED(noargs))
{
    if (!self->started) return not_running();
    return PyLong_FromLong(self->efd);
}

static PyObject *
Pump_close(Pump *self, PyObject *Py_UNUSED(noargs))
{
    stop_thread(self);
    Py_RETURN_NONE;
}

static PyMethodDef Pump_methods[] = {
    {"add", (PyCFunction)Pump_add, METH_O, "add(fd) -> slot: the thread reads fd from now on"},
    {"take", (PyCFunction)Pump_take, METH_O, "take(slot) -> (reads, finished, err, eof, last)"},
    {"remove", (PyCFunction)Pump_remove, METH_O, "remove(slot): the thread reads it no more"},
    {"drain", (PyCFunction)Pump_drain, METH_NOARGS,
     "drain() -> [(slot, (reads, finished, err, eof, last))] of every socket with news"},
    {"fileno", (PyCFunction)Pump_fileno, METH_NOARGS, "an eventfd, readable when drain() has news"},
    {"close", (PyCFunction)Pump_close, METH_NOARGS, "stop the thread and drop every socket"},
    {NULL}
};

static PyTypeObject PumpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "servemark.client._pump.Pump",
    .tp_doc = "Pump(): a reader thread for plain-TCP sockets",
    .tp_basicsize = sizeof(Pump),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Pump_init,
    .tp_dealloc = (destructor)Pump_dealloc,
    .tp_methods = Pump_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pump", "A reader thread for plain-TCP sockets.", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__pump(void)
{
    if (PyType_Ready(&PumpType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Pump", (PyObject *)&PumpType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

/* The client's per-read hot path in C: one network read of a plain-TCP connection.
 *
 * Why: with chunks paced 10 ms apart every chunk is its own read, and the Python work around
 * each read (recvmsg's ancillary tuples, the kernel stamp's conversion, the HTTP chunk and SSE
 * framing checks, three Python frames) cost more than the read itself. A Reader is the event
 * loop's reader callback for one socket: it calls recvmsg, converts the SO_TIMESTAMPNS stamp
 * (CLOCK_REALTIME) to the perf_counter clock (CLOCK_MONOTONIC on Linux), keeps the connection's
 * ``last`` (read time) and ``arrival`` (kernel stamp) attributes up to date, and hands every
 * leading whole HTTP chunk that holds exactly one single-line SSE "data: X" event (a paced
 * stream's usual read is one; a client that fell behind gets several) straight to the armed
 * event callback, one call per event. What is left of the read — [DONE], the last chunk, a
 * partial chunk, any other shape — goes to the slow callback unchanged, where the Python
 * transport handles it as before; end of stream and errors go to the closed callback.
 * Semantics match servemark.client.fasthttp._SockConn._readable.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "_readcommon.h"

#define READ_SIZE 65536

static char rbuf[READ_SIZE];   /* one read at a time: callbacks run with the GIL held */
static ClockOffset clock_offset = {0.0, -1e300};

typedef struct {
    PyObject_HEAD
    int fd;
    PyObject *conn;    /* the connection: its ``last`` and ``arrival`` are kept up to date */
    PyObject *slow;    /* slow(data: bytes, arrival: float | None) */
    PyObject *closed;  /* closed(errno: int), 0 at end of stream */
    PyObject *event;   /* event(payload: bytes, arrival: float | None), or None: not armed */
    PyObject *error;   /* error(exc): what event raised goes here, not to the event loop */
    PyObject *buf;     /* conn.buf, its pending bytes: the event path only while empty */
    double arrival;    /* kernel arrival of the latest stamped read (perf_counter clock) */
    int has_arrival;
} Reader;

static PyObject *str_last, *str_arrival, *str_buf;

/* Hand one event to the armed callback; what it raises goes to the error callback. Returns
 * what the callback (or the error callback) returned, NULL with an exception set on failure. */
static PyObject *
call_event(PyObject *event, PyObject *error, const char *x, Py_ssize_t xn, PyObject *arrival)
{
    PyObject *payload = PyBytes_FromStringAndSize(x, xn);
    if (payload == NULL) return NULL;
    Py_INCREF(error);  /* event may re-arm */
    PyObject *res = PyObject_CallFunctionObjArgs(event, payload, arrival, NULL);
    Py_DECREF(payload);
    if (res == NULL && error != Py_None && !PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)
            && !PyErr_ExceptionMatches(PyExc_SystemExit)) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb != NULL && value != NULL) PyException_SetTraceback(value, tb);
        res = PyObject_CallFunctionObjArgs(error, value ? value : Py_None, NULL);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    }
    Py_DECREF(error);
    return res;
}

static PyObject *
Reader_call(Reader *self, PyObject *args, PyObject *kwargs)
{
    if (self->conn == NULL) Py_RETURN_NONE;  /* not initialised, or cleared */
    double now;
    int stamped;
    ssize_t n = recv_stamped(self->fd, rbuf, READ_SIZE, 0, &clock_offset, &now, &self->arrival,
                             &stamped);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) Py_RETURN_NONE;
        return PyObject_CallFunction(self->closed, "i", errno);
    }
    if (n == 0) return PyObject_CallFunction(self->closed, "i", 0);
    if (stamped) self->has_arrival = 1;
    PyObject *last = PyFloat_FromDouble(now);
    if (last == NULL) return NULL;
    int bad = PyObject_SetAttr(self->conn, str_last, last);
    Py_DECREF(last);
    if (bad) return NULL;
    PyObject *arrival = self->has_arrival ? PyFloat_FromDouble(self->arrival) : Py_NewRef(Py_None);
    if (arrival == NULL) return NULL;
    if (stamped && PyObject_SetAttr(self->conn, str_arrival, arrival) < 0) {
        Py_DECREF(arrival);
        return NULL;
    }
    /* While armed and nothing is pending: every leading whole chunk that is one event goes to
     * the event callback (a client that fell a read behind gets several in one read, all with
     * this read's arrival, as the Python path gives them); the rest, if any, to slow. */
    Py_ssize_t pos = 0;
    const char *x;
    Py_ssize_t xn, used;
    while (pos < n && self->event != Py_None && PyByteArray_GET_SIZE(self->buf) == 0
            && chunk_event(rbuf + pos, n - pos, &x, &xn, &used)) {
        PyObject *event = Py_NewRef(self->event);
        PyObject *r = call_event(event, self->error, x, xn, arrival);
        Py_DECREF(event);
        if (r == NULL) {
            Py_DECREF(arrival);
            return NULL;
        }
        Py_DECREF(r);
        pos += used;
    }
    PyObject *res;
    if (pos == n) {
        res = Py_NewRef(Py_None);
    } else {
        PyObject *data = PyBytes_FromStringAndSize(rbuf + pos, n - pos);
        if (data == NULL) {
            Py_DECREF(arrival);
            return NULL;
        }
        res = PyObject_CallFunctionObjArgs(self->slow, data, arrival, NULL);
        Py_DECREF(data);
    }
    Py_DECREF(arrival);
    return res;
}

static int
Reader_init(Reader *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"fd", "conn", "slow", "closed", NULL};
    int fd;
    PyObject *conn, *slow, *closed;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iOOO", kwlist, &fd, &conn, &slow, &closed))
        return -1;
    PyObject *buf = PyObject_GetAttr(conn, str_buf);
    if (buf == NULL) return -1;
    if (!PyByteArray_CheckExact(buf)) {
        Py_DECREF(buf);
        PyErr_SetString(PyExc_TypeError, "conn.buf must be a bytearray");
        return -1;
    }
    self->fd = fd;
    Py_XSETREF(self->conn, Py_NewRef(conn));
    Py_XSETREF(self->slow, Py_NewRef(slow));
    Py_XSETREF(self->closed, Py_NewRef(closed));
    Py_XSETREF(self->buf, buf);
    Py_XSETREF(self->event, Py_NewRef(Py_None));
    Py_XSETREF(self->error, Py_NewRef(Py_None));
    self->has_arrival = 0;
    return 0;
}

static int
Reader_traverse(Reader *self, visitproc visit, void *arg)
{
    Py_VISIT(self->conn);
    Py_VISIT(self->slow);
    Py_VISIT(self->closed);
    Py_VISIT(self->event);
    Py_VISIT(self->error);
    Py_VISIT(self->buf);
    return 0;
}

static int
Reader_clear(Reader *self)
{
    Py_CLEAR(self->conn);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->closed);
    Py_CLEAR(self->event);
    Py_CLEAR(self->error);
    Py_CLEAR(self->buf);
    return 0;
}

static void
Reader_dealloc(Reader *self)
{
    PyObject_GC_UnTrack(self);
    Reader_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Reader_arm(Reader *self, PyObject *args)
{
    PyObject *event, *error = Py_None;
    if (!PyArg_ParseTuple(args, "O|O", &event, &error)) return NULL;
    Py_XSETREF(self->event, Py_NewRef(event));
    Py_XSETREF(self->error, Py_NewRef(error));
    Py_RETURN_NONE;
}

static PyObject *
Reader_armed(Reader *self, void *closure)
{
    return PyBool_FromLong(self->event != NULL && self->event != Py_None);
}

static PyMethodDef Reader_methods[] = {
    {"arm", (PyCFunction)Reader_arm, METH_VARARGS,
     "arm(event, error=None): one-event reads go to event(payload, arrival); what it raises to "
     "error(exc). arm(None) disarms."},
    {NULL}
};

static PyGetSetDef Reader_getset[] = {
    {"armed", (getter)Reader_armed, NULL, "whether an event callback is armed", NULL},
    {NULL}
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "servemark.client._fastread.Reader",
    .tp_doc = "Reader(fd, conn, slow, closed): the reader callback of one socket",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_traverse = (traverseproc)Reader_traverse,
    .tp_clear = (inquiry)Reader_clear,
    .tp_call = (ternaryfunc)Reader_call,
    .tp_getset = Reader_getset,
    .tp_methods = Reader_methods,
};

static PyObject *
py_split_events(PyObject *mod, PyObject *arg)
{
    char *data;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(arg, &data, &n) < 0) return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    Py_ssize_t pos = 0, xn, used;
    const char *x;
    while (pos < n && chunk_event(data + pos, n - pos, &x, &xn, &used)) {
        PyObject *payload = PyBytes_FromStringAndSize(x, xn);
        if (payload == NULL || PyList_Append(out, payload) < 0) {
            Py_XDECREF(payload);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(payload);
        pos += used;
    }
    return Py_BuildValue("(Nn)", out, pos);
}

static PyMethodDef methods[] = {
    {"split_events", py_split_events, METH_O,
     "(payloads, used): the leading whole chunks that each hold one SSE 'data: X' event, as "
     "the armed Reader hands them to its event callback, and how many bytes they take (the "
     "Reader's fast-path test, exposed for tests)."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastread", "The client's per-read hot path in C.", -1, methods,
};

PyMODINIT_FUNC
PyInit__fastread(void)
{
    str_last = PyUnicode_InternFromString("last");
    str_arrival = PyUnicode_InternFromString("arrival");
    str_buf = PyUnicode_InternFromString("buf");
    if (!str_last || !str_arrival || !str_buf) return NULL;
    if (PyType_Ready(&ReaderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

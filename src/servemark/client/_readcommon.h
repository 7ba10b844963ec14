/* What the two C read paths share: one stamped recvmsg, the clock conversion of kernel receive
 * stamps, and the test for a read that is one HTTP chunk holding one single-line SSE event.
 * Included by _fastread.c (the event loop's reader callback) and _pump.c (the reader thread);
 * static, so each module has its own copy, working on the offset state it is handed.
 */
#ifndef SERVEMARK_READCOMMON_H
#define SERVEMARK_READCOMMON_H

#include <Python.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define REFRESH_S 0.1

typedef struct {
    double offset;    /* CLOCK_REALTIME minus CLOCK_MONOTONIC */
    double taken_at;  /* when (CLOCK_MONOTONIC); -1e300 before the first reading */
} ClockOffset;

static double
ts_of(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The offset from the tightest of three bracketed readings (a preemption between the two clock
 * reads would otherwise be in it), refreshed every REFRESH_S, as kernelstamp.py does. */
static void
refresh_offset(ClockOffset *c, double now)
{
    double best_width = 1e300, best = 0.0;
    for (int i = 0; i < 3; i++) {
        double a = ts_of(CLOCK_MONOTONIC);
        double r = ts_of(CLOCK_REALTIME);
        double b = ts_of(CLOCK_MONOTONIC);
        if (b - a < best_width) {
            best_width = b - a;
            best = r - (a + b) / 2;
        }
    }
    c->offset = best;
    c->taken_at = now;
}

/* A kernel stamp (CLOCK_REALTIME) on the perf_counter clock (CLOCK_MONOTONIC on Linux), read at
 * ``now``; ``now`` itself when the stamp is implausible (later than now, or 30 s old). */
static double
stamp_to_perf(ClockOffset *c, const struct timespec *ts, double now)
{
    if (now - c->taken_at > REFRESH_S) refresh_offset(c, now);
    double a = (double)ts->tv_sec + (double)ts->tv_nsec * 1e-9 - c->offset;
    return (now - 30.0 < a && a <= now) ? a : now;
}

/* One recvmsg of fd into buf[0:cap]; returns what recvmsg returned (errno set when < 0).
 * *now: the read time (CLOCK_MONOTONIC); *arrival: the kernel's receive stamp on that clock
 * when the read carried one (*stamped 1), else left as it was (*stamped 0). */
static ssize_t
recv_stamped(int fd, char *buf, size_t cap, int flags, ClockOffset *clock, double *now,
             double *arrival, int *stamped)
{
    struct iovec iov = {buf, cap};
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
    ssize_t n = recvmsg(fd, &msg, flags);
    int saved = errno;
    *now = ts_of(CLOCK_MONOTONIC);
    *stamped = 0;
    for (struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL; c != NULL;
            c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS
                && c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            *arrival = stamp_to_perf(clock, &ts, *now);
            *stamped = 1;
            break;
        }
    }
    errno = saved;
    return n;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The event's payload (start, length) and the bytes the chunk takes (used) when data[0:n]
 * begins with one whole non-empty HTTP chunk whose payload is one single-line SSE event
 * "data: X\n\n" (no CR anywhere, X is not [DONE]). */
static int
chunk_event(const char *data, Py_ssize_t n, const char **start, Py_ssize_t *len,
            Py_ssize_t *used)
{
    Py_ssize_t i = 0, size = 0;
    while (i < n && i < 8) {
        int v = hexval(data[i]);
        if (v < 0) break;
        size = size * 16 + v;
        i++;
    }
    if (i == 0 || i + 1 >= n || data[i] != '\r' || data[i + 1] != '\n') return 0;
    i += 2;
    if (size < 8 || i + size + 2 > n || data[i + size] != '\r' || data[i + size + 1] != '\n')
        return 0;
    const char *p = data + i;
    if (memcmp(p, "data: ", 6) != 0 || p[size - 2] != '\n' || p[size - 1] != '\n') return 0;
    const char *x = p + 6;
    Py_ssize_t xn = size - 8;
    if (memchr(x, '\n', xn) || memchr(x, '\r', xn)) return 0;
    if (xn == 6 && memcmp(x, "[DONE]", 6) == 0) return 0;
    *start = x;
    *len = xn;
    *used = i + size + 2;
    return 1;
}

#endif

/*
 * The native floor: the same DEALER -> ROUTER -> DEALER relay as the zeromq.js floor, in C
 * against libzmq, so the bench can show what libzmq itself costs on this machine.
 *
 *   zmq-native broker                          binds tcp://127.0.0.1:*, prints "ready <endpoint>"
 *   zmq-native echo <endpoint>                 DEALER "responder": echoes [from, body]
 *   zmq-native lat <endpoint> <size> <warmup> <calls>
 *       sequential calls; prints one round trip per line (ns), then "cpu <ms>"
 *   zmq-native thr <endpoint> <size> <window> <duration_ms> <warmup_ms>
 *       <window> calls in flight; prints the round trip of each call completed in the measured
 *       window (ns),
 *       then "elapsed <ns>", "total <calls>", "cpu <ms>"
 *
 * Frames: caller [to, body] -> relay [to, from, body] -> responder [from, body] and back.
 * Every process dies with its parent (PR_SET_PDEATHSIG) and every loop is bounded.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define RESPONDER "responder"
#define MAX_FRAMES 8

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_ms(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static void __attribute__((noreturn)) die(const char *what) {
  fprintf(stderr, "zmq-native: %s: %s\n", what, zmq_strerror(zmq_errno()));
  exit(1);
}

/* Receives a multipart message into msgs; returns the frame count, or -1 on timeout. */
static int recv_multipart(void *sock, zmq_msg_t *msgs) {
  int n = 0;
  for (;;) {
    if (n == MAX_FRAMES) die("too many frames");
    zmq_msg_init(&msgs[n]);
    if (zmq_msg_recv(&msgs[n], sock, 0) < 0) {
      zmq_msg_close(&msgs[n]);
      if (zmq_errno() == EAGAIN) return -1;
      die("recv");
    }
    n++;
    if (!zmq_msg_more(&msgs[n - 1])) return n;
  }
}

static void close_all(zmq_msg_t *msgs, int n) {
  for (int i = 0; i < n; i++) zmq_msg_close(&msgs[i]);
}

static int run_broker(void *ctx) {
  void *router = zmq_socket(ctx, ZMQ_ROUTER);
  int hwm = 10000, zero = 0;
  zmq_setsockopt(router, ZMQ_SNDHWM, &hwm, sizeof hwm);
  zmq_setsockopt(router, ZMQ_RCVHWM, &hwm, sizeof hwm);
  zmq_setsockopt(router, ZMQ_LINGER, &zero, sizeof zero);
  if (zmq_bind(router, "tcp://127.0.0.1:*") != 0) die("bind");
  char endpoint[256];
  size_t len = sizeof endpoint;
  zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &len);
  printf("ready %s\n", endpoint);
  fflush(stdout);
  zmq_msg_t m[MAX_FRAMES];
  for (;;) {
    int n = recv_multipart(router, m);
    if (n != 3) { /* [from, to, body] only */
      close_all(m, n);
      continue;
    }
    /* unroutable (responder not yet connected) is dropped: the caller probes first */
    zmq_msg_send(&m[1], router, ZMQ_SNDMORE);
    zmq_msg_send(&m[0], router, ZMQ_SNDMORE);
    zmq_msg_send(&m[2], router, 0);
    close_all(m, n);
  }
  return 0;
}

static void *dealer(void *ctx, const char *endpoint, const char *id) {
  void *s = zmq_socket(ctx, ZMQ_DEALER);
  int hwm = 10000, zero = 0;
  zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
  zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
  zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
  if (id) zmq_setsockopt(s, ZMQ_ROUTING_ID, id, strlen(id));
  if (zmq_connect(s, endpoint) != 0) die("connect");
  return s;
}

static int run_echo(void *ctx, const char *endpoint) {
  void *s = dealer(ctx, endpoint, RESPONDER);
  printf("ready\n");
  fflush(stdout);
  zmq_msg_t m[MAX_FRAMES];
  for (;;) {
    int n = recv_multipart(s, m);
    for (int i = 0; i < n; i++) zmq_msg_send(&m[i], s, i + 1 < n ? ZMQ_SNDMORE : 0);
    close_all(m, n);
  }
  return 0;
}

static void send_call(void *s, const char *body, size_t size) {
  zmq_send(s, RESPONDER, strlen(RESPONDER), ZMQ_SNDMORE);
  if (zmq_send(s, body, size, 0) < 0) die("send");
}

/* Sends 1-byte probes until one comes back: until then the relay drops what it cannot route. */
static void probe(void *s) {
  int timeout = 100;
  zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
  zmq_msg_t m[MAX_FRAMES];
  for (int tries = 0; tries < 100; tries++) {
    send_call(s, "P", 1);
    int n = recv_multipart(s, m);
    if (n > 0) {
      close_all(m, n);
      /* drain late probe echoes */
      while ((n = recv_multipart(s, m)) > 0) close_all(m, n);
      timeout = 10000;
      zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
      return;
    }
  }
  fprintf(stderr, "zmq-native: no echo from the responder within 10 s\n");
  exit(1);
}

/* Receives one echo; returns its body size, or exits on timeout. */
static size_t recv_echo(void *s, char *body, size_t cap) {
  zmq_msg_t m[MAX_FRAMES];
  int n = recv_multipart(s, m);
  if (n < 0) {
    fprintf(stderr, "zmq-native: no echo within 10 s\n");
    exit(1);
  }
  size_t size = zmq_msg_size(&m[n - 1]);
  if (body) memcpy(body, zmq_msg_data(&m[n - 1]), size < cap ? size : cap);
  close_all(m, n);
  return size;
}

static int run_lat(void *ctx, const char *endpoint, size_t size, long warmup, long calls) {
  void *s = dealer(ctx, endpoint, NULL);
  probe(s);
  char *body = malloc(size);
  memset(body, 'a', size);
  for (long i = 0; i < warmup; i++) {
    send_call(s, body, size);
    recv_echo(s, NULL, 0);
  }
  for (long i = 0; i < calls; i++) {
    uint64_t t0 = now_ns();
    send_call(s, body, size);
    if (recv_echo(s, NULL, 0) != size) die("echo size");
    printf("%llu\n", (unsigned long long)(now_ns() - t0));
  }
  printf("cpu %.3f\n", cpu_ms());
  return 0;
}

/* Each body carries its send time in its first 8 bytes, so the echo tells its round trip. */
static int run_thr(void *ctx, const char *endpoint, size_t size, long window, long duration_ms, long warmup_ms) {
  void *s = dealer(ctx, endpoint, NULL);
  probe(s);
  if (size < 8) size = 8;
  char *body = malloc(size);
  memset(body, 'a', size);
  uint64_t start = now_ns();
  uint64_t measure_from = start + (uint64_t)warmup_ms * 1000000ull;
  uint64_t measure_to = measure_from + (uint64_t)duration_ms * 1000000ull;
  long in_flight = 0, total = 0;
  for (; in_flight < window; in_flight++) {
    uint64_t t = now_ns();
    memcpy(body, &t, 8);
    send_call(s, body, size);
  }
  uint64_t *samples = malloc(sizeof(uint64_t) * 4096);
  size_t nsamples = 0, cap = 4096;
  char echo[8];
  while (in_flight > 0) {
    recv_echo(s, echo, 8);
    in_flight--;
    total++;
    uint64_t t = now_ns(), sent;
    memcpy(&sent, echo, 8);
    if (t >= measure_from && t <= measure_to) {
      if (nsamples == cap) samples = realloc(samples, sizeof(uint64_t) * (cap *= 2));
      samples[nsamples++] = t - sent;
    }
    if (t < measure_to) {
      memcpy(body, &t, 8);
      send_call(s, body, size);
      in_flight++;
    }
  }
  for (size_t i = 0; i < nsamples; i++) printf("%llu\n", (unsigned long long)samples[i]);
  printf("elapsed %llu\n", (unsigned long long)(measure_to - measure_from));
  printf("total %ld\n", total);
  printf("cpu %.3f\n", cpu_ms());
  return 0;
}

int main(int argc, char **argv) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) return 1; /* parent already gone */
  if (argc < 2) {
    fprintf(stderr, "usage: zmq-native broker | echo EP | lat EP SIZE WARMUP CALLS | thr EP SIZE WINDOW MS WARMUP_MS\n");
    return 2;
  }
  void *ctx = zmq_ctx_new();
  const char *mode = argv[1];
  if (!strcmp(mode, "broker")) return run_broker(ctx);
  if (!strcmp(mode, "echo") && argc == 3) return run_echo(ctx, argv[2]);
  if (!strcmp(mode, "lat") && argc == 6) return run_lat(ctx, argv[2], strtoul(argv[3], 0, 10), atol(argv[4]), atol(argv[5]));
  if (!strcmp(mode, "thr") && argc == 7) return run_thr(ctx, argv[2], strtoul(argv[3], 0, 10), atol(argv[4]), atol(argv[5]), atol(argv[6]));
  fprintf(stderr, "zmq-native: bad arguments\n");
  return 2;
}

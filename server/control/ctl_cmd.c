/* ctl_cmd: the command runner of the controllers that run the service's commands (exec; file's
 * reload): a list (no shell) or a string run by /bin/sh -c, {value} substituted, in its own
 * process group, killed whole at the deadline (see ctl.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "casca_err.h"
#include "clock.h"
#include "ctl.h"

#define MAX_OUTPUT (64u << 10)

extern char **environ;

bool ctl_parse_cmd(struct ctl_parse *p, const struct yd_node *node, struct ctl_cmd *out)
{
    memset(out, 0, sizeof(*out));
    if (node->kind == YD_SCALAR) {
        if (!*node->scalar) {
            ctl_parse_error(p, node, "the command is empty");
            return false;
        }
        const char *sh[] = {"/bin/sh", "-c", node->scalar, "casca", NULL};
        if (!(out->argv = calloc(5, sizeof(char *))))
            return false;
        for (int i = 0; i < 4; i++)
            out->argv[i] = strdup(sh[i]);
        return true;
    }
    if (node->kind != YD_SEQ || node->n == 0) {
        ctl_parse_error(p, node, "expected a command: a list [program, arg, ...] or a shell line");
        return false;
    }
    if (!(out->argv = calloc(node->n + 1, sizeof(char *))))
        return false;
    for (size_t i = 0; i < node->n; i++) {
        if (node->values[i]->kind != YD_SCALAR) {
            ctl_parse_error(p, node->values[i], "each argument of a command is a plain value");
            return false;
        }
        out->argv[i] = strdup(node->values[i]->scalar);
    }
    return true;
}

void ctl_cmd_free(struct ctl_cmd *c)
{
    for (size_t i = 0; c->argv && c->argv[i]; i++)
        free(c->argv[i]);
    free(c->argv);
    c->argv = NULL;
}

/* argv with {value} replaced (or value appended); NULL on allocation failure. */
static char **build_argv(const struct ctl_cmd *c, const char *value, bool append)
{
    size_t n = 0;
    bool used = false;
    while (c->argv[n])
        n++;
    char **argv = calloc(n + 2, sizeof(char *));
    if (!argv)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *a = c->argv[i], *at = value ? strstr(a, "{value}") : NULL;
        if (at) {
            used = true;
            if (asprintf(&argv[i], "%.*s%s%s", (int)(at - a), a, value, at + 7) < 0)
                argv[i] = NULL;
        } else {
            argv[i] = strdup(a);
        }
        if (!argv[i])
            goto fail;
    }
    if (value && append && !used && !(argv[n] = strdup(value)))
        goto fail;
    return argv;
fail:
    for (size_t i = 0; i <= n; i++)
        free(argv[i]);
    free(argv);
    return NULL;
}

static int64_t now_ms(void)
{
    return casca_mono_ns() / CASCA_NS_PER_MS;
}

static void drain(int fd, char **buf, size_t *len, bool *open_)
{
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n <= 0) {
        if (n == 0 || (errno != EINTR && errno != EAGAIN))
            *open_ = false;
        return;
    }
    if (*len + (size_t)n > MAX_OUTPUT)
        return; /* keep reading so the command does not block, drop the excess */
    char *grown = realloc(*buf, *len + (size_t)n + 1);
    if (!grown)
        return;
    memcpy(grown + *len, chunk, (size_t)n);
    *len += (size_t)n;
    grown[*len] = 0;
    *buf = grown;
}

int ctl_cmd_run(const struct ctl_cmd *c, const char *value, bool append_value, char **out,
                struct ctl_io *io)
{
    if (out)
        *out = NULL;
    if (ctl_io_left_ms(io) <= 0)
        return ctl_io_fail(io, CASCA_ERR_TIMEOUT, "deadline passed before running %s", c->argv[0]);
    char **argv = build_argv(c, value, append_value);
    if (!argv)
        return ctl_io_fail(io, CASCA_ERR_NOMEM, "out of memory");
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    int rc = CASCA_OK;
    if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
        rc = ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "pipe: %s", strerror(errno));
        goto out;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int err = posix_spawnp(&pid, argv[0], &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;
    if (err) {
        rc = ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "cannot run %s: %s", argv[0], strerror(err));
        goto out;
    }
    char *obuf = NULL, *ebuf = NULL;
    size_t olen = 0, elen = 0;
    bool oopen = true, eopen = true, timed_out = false;
    int64_t end = now_ms() + ctl_io_left_ms(io);
    while (oopen || eopen) {
        int64_t left = end - now_ms();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd fds[2] = {{oopen ? po[0] : -1, POLLIN, 0}, {eopen ? pe[0] : -1, POLLIN, 0}};
        int n = poll(fds, 2, left > 1000 ? 1000 : (int)left);
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && fds[0].revents)
            drain(po[0], &obuf, &olen, &oopen);
        if (n > 0 && fds[1].revents)
            drain(pe[0], &ebuf, &elen, &eopen);
    }
    int status = 0;
    if (timed_out) {
        kill(-pid, SIGKILL);
        waitpid(pid, &status, 0);
        rc = ctl_io_fail(io, CASCA_ERR_TIMEOUT, "%s: no answer before the deadline (killed)",
                         argv[0]);
    } else {
        /* the pipes closed: the command is ending; wait for it, killing it at the deadline */
        while (waitpid(pid, &status, WNOHANG) == 0) {
            if (now_ms() >= end) {
                kill(-pid, SIGKILL);
                waitpid(pid, &status, 0);
                timed_out = true;
                break;
            }
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        if (timed_out)
            rc = ctl_io_fail(io, CASCA_ERR_TIMEOUT, "%s: did not exit before the deadline",
                             argv[0]);
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            rc = ctl_io_fail(io, CASCA_ERR_UNAVAILABLE, "%s: %s %d: %.*s", argv[0],
                             WIFEXITED(status) ? "exit status" : "killed by signal",
                             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                             ebuf ? (int)strcspn(ebuf, "\n") : 0, ebuf ? ebuf : "");
    }
    if (rc == CASCA_OK && out) {
        *out = obuf ? obuf : strdup("");
        obuf = NULL;
    }
    free(obuf);
    free(ebuf);
out:
    for (int i = 0; i < 2; i++) {
        if (po[i] >= 0)
            close(po[i]);
        if (pe[i] >= 0)
            close(pe[i]);
    }
    for (size_t i = 0; argv[i]; i++)
        free(argv[i]);
    free(argv);
    return rc;
}

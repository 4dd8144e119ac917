/*
 * A PAM module for the sandbox PostgreSQL: it asks PostgreSQL's conversation for the
 * password (an IAM auth token, 1,000+ bytes with session credentials; pam_exec's
 * expose_authtok would cut it at 511) and hands it whole, on stdin, to the verifier named in
 * the module's arguments, with `--user <login role>` appended. Exit status 0 admits.
 *
 *   auth    required  /path/pam_pwless_iam.so /usr/bin/python3 /path/iam-verifier.py CONFIG
 *   account required  pam_permit.so
 *
 * No PAM headers are needed: the few declarations below are Linux-PAM's stable ABI, and the
 * symbols resolve against the libpam that PostgreSQL already loaded.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct pam_handle pam_handle_t;
struct pam_message { int msg_style; const char *msg; };
struct pam_response { char *resp; int resp_retcode; };
struct pam_conv {
    int (*conv)(int, const struct pam_message **, struct pam_response **, void *);
    void *appdata_ptr;
};
extern int pam_get_user(pam_handle_t *, const char **, const char *);
extern int pam_get_item(const pam_handle_t *, int, const void **);

#define PAM_SUCCESS 0
#define PAM_SERVICE_ERR 3
#define PAM_AUTH_ERR 7
#define PAM_CONV 5
#define PAM_PROMPT_ECHO_OFF 1
#define MAX_ARGS 16

static void wipe(char *secret) {
    if (secret) {
        volatile char *p = secret;
        while (*p) *p++ = 0;
        free(secret);
    }
}

static int write_all(int fd, const char *data, size_t length) {
    while (length > 0) {
        ssize_t written = write(fd, data, length);
        if (written < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += written;
        length -= (size_t)written;
    }
    return 0;
}

int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    (void)flags;
    if (argc < 1 || argc > MAX_ARGS - 3) return PAM_SERVICE_ERR;
    const char *user = NULL;
    if (pam_get_user(pamh, &user, NULL) != PAM_SUCCESS || user == NULL) return PAM_AUTH_ERR;
    const struct pam_conv *conv = NULL;
    if (pam_get_item(pamh, PAM_CONV, (const void **)&conv) != PAM_SUCCESS || conv == NULL)
        return PAM_SERVICE_ERR;
    struct pam_message message = {PAM_PROMPT_ECHO_OFF, "Password: "};
    const struct pam_message *messages[1] = {&message};
    struct pam_response *response = NULL;
    if (conv->conv(1, messages, &response, conv->appdata_ptr) != PAM_SUCCESS || response == NULL)
        return PAM_AUTH_ERR;
    char *password = response->resp;
    free(response);
    if (password == NULL) return PAM_AUTH_ERR;

    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) {
        wipe(password);
        return PAM_SERVICE_ERR;
    }
    pid_t child = fork();
    if (child < 0) {
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        wipe(password);
        return PAM_SERVICE_ERR;
    }
    if (child == 0) {
        const char *args[MAX_ARGS];
        int count = 0;
        for (int i = 0; i < argc; i++) args[count++] = argv[i];
        args[count++] = "--user";
        args[count++] = user;
        args[count] = NULL;
        dup2(pipe_fds[0], 0);
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        signal(SIGPIPE, SIG_DFL);
        execv(args[0], (char *const *)args);
        _exit(127);
    }
    close(pipe_fds[0]);
    /* The verifier may refuse before reading it all: a closed pipe is not our crash. */
    void (*previous)(int) = signal(SIGPIPE, SIG_IGN);
    write_all(pipe_fds[1], password, strlen(password));
    close(pipe_fds[1]);
    signal(SIGPIPE, previous);
    wipe(password);

    int status = 0;
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) return PAM_SERVICE_ERR;
    }
    return (WIFEXITED(status) && WEXITSTATUS(status) == 0) ? PAM_SUCCESS : PAM_AUTH_ERR;
}

int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    (void)pamh; (void)flags; (void)argc; (void)argv;
    return PAM_SUCCESS;
}

/* A pass-through IFD handler for the simulator's pcscd: every call goes to vsmartcard's libifdvpcd.so,
 * and it adds the capability that driver lacks, TAG_IFD_POLLING_THREAD_WITH_TIMEOUT (pcsc-lite
 * ifdhandler.h). Without it pcscd checks for a card every PCSCLITE_STATUS_POLL_RATE (400 ms, fixed when
 * pcsc-lite is built), so a card inserted in the simulator waited up to 400 ms before the terminal saw
 * it. With it, pcscd calls our wait function, then checks presence: every FORECOURT_VPCD_POLL_MS
 * (default 10) milliseconds. Real readers (the CCID driver) signal card events themselves. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ifdhandler.h>

#ifndef VPCD_LIBRARY
#define VPCD_LIBRARY "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
#endif

static void *vpcd;
static int period_ms = 10;

static void *vpcd_symbol(const char *name) {
    if (vpcd == NULL) {
        vpcd = dlopen(VPCD_LIBRARY, RTLD_NOW | RTLD_LOCAL);
        const char *ms = getenv("FORECOURT_VPCD_POLL_MS");
        if (ms != NULL && atoi(ms) > 0) period_ms = atoi(ms);
    }
    return vpcd == NULL ? NULL : dlsym(vpcd, name);
}

/* the same function of the real driver, with the same arguments (its type from ifdhandler.h) */
#define CALL(name, ...) do { \
        __typeof__(&name) fn = (__typeof__(&name))vpcd_symbol(#name); \
        return fn == NULL ? IFD_COMMUNICATION_ERROR : fn(__VA_ARGS__); \
    } while (0)

static RESPONSECODE wait_for_change(DWORD lun, int timeout_ms) {
    (void)lun;
    int ms = timeout_ms > 0 && timeout_ms < period_ms ? timeout_ms : period_ms;
    usleep((useconds_t)ms * 1000);
    return IFD_SUCCESS;    /* pcscd then asks IFDHICCPresence */
}

RESPONSECODE IFDHGetCapabilities(DWORD lun, DWORD tag, PDWORD length, PUCHAR value) {
    if (tag == TAG_IFD_POLLING_THREAD_WITH_TIMEOUT) {
        RESPONSECODE (*fn)(DWORD, int) = wait_for_change;
        if (*length < sizeof fn) return IFD_ERROR_INSUFFICIENT_BUFFER;
        *length = sizeof fn;
        memcpy(value, &fn, sizeof fn);
        return IFD_SUCCESS;
    }
    CALL(IFDHGetCapabilities, lun, tag, length, value);
}

RESPONSECODE IFDHCreateChannel(DWORD lun, DWORD channel) {
    CALL(IFDHCreateChannel, lun, channel);
}

RESPONSECODE IFDHCreateChannelByName(DWORD lun, LPSTR name) {
    CALL(IFDHCreateChannelByName, lun, name);
}

RESPONSECODE IFDHCloseChannel(DWORD lun) {
    CALL(IFDHCloseChannel, lun);
}

RESPONSECODE IFDHSetCapabilities(DWORD lun, DWORD tag, DWORD length, PUCHAR value) {
    CALL(IFDHSetCapabilities, lun, tag, length, value);
}

RESPONSECODE IFDHSetProtocolParameters(DWORD lun, DWORD protocol, UCHAR flags, UCHAR pts1, UCHAR pts2,
                                       UCHAR pts3) {
    CALL(IFDHSetProtocolParameters, lun,
         protocol, flags, pts1, pts2, pts3);
}

RESPONSECODE IFDHPowerICC(DWORD lun, DWORD action, PUCHAR atr, PDWORD atr_length) {
    CALL(IFDHPowerICC, lun, action, atr, atr_length);
}

RESPONSECODE IFDHTransmitToICC(DWORD lun, SCARD_IO_HEADER send_pci, PUCHAR tx, DWORD tx_length, PUCHAR rx,
                               PDWORD rx_length, PSCARD_IO_HEADER recv_pci) {
    CALL(IFDHTransmitToICC, lun, send_pci, tx, tx_length, rx, rx_length, recv_pci);
}

RESPONSECODE IFDHControl(DWORD lun, DWORD code, PUCHAR tx, DWORD tx_length, PUCHAR rx, DWORD rx_length,
                         LPDWORD returned) {
    CALL(IFDHControl, lun, code, tx,
         tx_length, rx, rx_length, returned);
}

RESPONSECODE IFDHICCPresence(DWORD lun) {
    CALL(IFDHICCPresence, lun);
}

/* Test-only: Wine 8.0 has no bcryptprimitives.dll, whose ProcessPrng Rust's standard library
 * imports on Windows. This stand-in, built with mingw beside the test executables, answers it
 * with RtlGenRandom. Never shipped: Windows 10 and later have the real one. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}

/* Wine runs Windows code as a Linux process: Linux hands out AMX tile state only to processes
 * that ask (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), and ONNX Runtime's Windows
 * build sees AMX in XCR0, uses it for int8 matmuls and dies on SIGILL. Windows itself enables
 * AMX for every process; ask Linux on the process's behalf when this stand-in loads. A failed
 * request (no AMX, an old kernel) changes nothing. */
static long linux_syscall2(long number, long a, long b) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(number), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return ret;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved) {
    (void)instance;
    (void)reserved;
    if (reason == DLL_PROCESS_ATTACH) {
        linux_syscall2(158 /* arch_prctl */, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */);
    }
    return TRUE;
}

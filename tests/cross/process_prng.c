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

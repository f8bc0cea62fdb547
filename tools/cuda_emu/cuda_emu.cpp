// Out-of-line part of cuda_emu.h: the fiber context switch (x86-64 System V).
#include "cuda_emu.h"

#if !defined(__x86_64__)
#error "cuda_emu's fiber switch is written for x86-64"
#endif

// emu_ctx_switch(void** from_sp, void* to_sp): push the callee-saved registers, save the stack
// pointer, load the other stack, pop its registers and return into it. A new fiber's stack is
// laid out by emu_run_blocks so that this "returns" into emu_fiber_main.
asm(R"(
.pushsection .text
.globl emu_ctx_switch
.type emu_ctx_switch,@function
emu_ctx_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size emu_ctx_switch, .-emu_ctx_switch
.popsection
)");

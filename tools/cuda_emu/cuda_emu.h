// CPU emulation of the part of the CUDA runtime and device language that csrc/cuda/*.cu use, so
// their kernels run (under ASan/UBSan) on a machine without a GPU. See README.md for what is
// faithful and what is not.
//
// Every CUDA thread of a launch is a fiber on the calling OS thread. Fibers switch only at
// __syncthreads, warp collectives and grid.sync, and the scheduler picks the next runnable
// fiber at random (EMU_SEED): any interleaving at synchronisation granularity can occur, and a
// missing barrier shows up as a wrong result or a sanitizer report rather than passing by luck
// of a fixed order.
//
// Included before every emulated source (g++ -include); the shims <cuda_runtime.h>,
// <cub/cub.cuh>, ... written by build.py point here.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// As under nvcc, so csrc/common headers take their CUDA branch (G3_HD host+device functions).
// Defined after the standard headers: those must keep their host view.
#define __CUDACC__ 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
// __shared__ is deliberately left undefined: tools/cuda_emu/patch.py rewrites each declaration
// into per-block storage, and a form it does not know fails to compile instead of silently
// becoming one variable shared by every block.

using std::isfinite;
using std::isnan;

[[noreturn]] inline void emu_fail(const char* what) {
  std::fprintf(stderr, "CUDA-EMU ERROR: %s\n", what);
  std::fflush(stderr);
  std::abort();
}

// Counters the probes of build.py's PROBES increment (one OS thread runs every fiber, so plain
// integers); driver.cpp hands them to the runner.
inline int64_t emu_knn_dist_evals = 0;  // grid kNN: candidate distances evaluated

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3() = default;
  dim3(unsigned x_, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// The running fiber's coordinates: one OS thread runs every fiber, the scheduler sets these at
// each switch.
inline dim3 threadIdx, blockIdx, blockDim, gridDim;

// ------------------------------------------------------------------------ runtime API

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidPitchValue = 12,
  cudaErrorCooperativeLaunchTooLarge = 720,
};
using cudaStream_t = struct CUstream_st*;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost,
  cudaMemcpyHostToDevice,
  cudaMemcpyDeviceToHost,
  cudaMemcpyDeviceToDevice,
  cudaMemcpyDefault
};
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrCooperativeLaunch = 95 };

// Launch errors, returned (and cleared) by cudaGetLastError as on a device.
inline cudaError_t emu_last_error = cudaSuccess;

inline const char* cudaGetErrorString(cudaError_t e) {
  static char buf[48];
  std::snprintf(buf, sizeof buf, "emulated CUDA error %d", static_cast<int>(e));
  return buf;
}
inline cudaError_t cudaGetLastError() {
  const cudaError_t e = emu_last_error;
  emu_last_error = cudaSuccess;
  return e;
}

// The device is a stub configured by the environment, so tests can steer the launchers'
// planning into every mode (cooperative with one or many blocks, step fallback):
// EMU_SMS multiprocessors (default 2), EMU_OCC resident blocks per SM for every kernel (2),
// EMU_COOP cooperative launch support (1).
inline int emu_env(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int /*device*/) {
  *value = attr == cudaDevAttrMultiProcessorCount ? emu_env("EMU_SMS", 2)
           : attr == cudaDevAttrCooperativeLaunch ? emu_env("EMU_COOP", 1)
                                                  : 0;
  return cudaSuccess;
}
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, const void*, int, size_t) {
  *blocks = emu_env("EMU_OCC", 2);
  return cudaSuccess;
}

// Streams are in order and the host waits for nothing: every call completes before it returns.
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
  if (bytes) std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                                     size_t height, cudaMemcpyKind, cudaStream_t) {
  if (width > dpitch || width > spitch) return cudaErrorInvalidPitchValue;
  for (size_t r = 0; r < height; ++r) {
    std::memcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  }
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

// ------------------------------------------------------------------------ device functions

inline float __int_as_float(int v) {
  float f;
  std::memcpy(&f, &v, 4);
  return f;
}
inline double __longlong_as_double(long long v) {
  double f;
  std::memcpy(&f, &v, 8);
  return f;
}
// Single rounding, like the device's fma.rn (std::fmaf is correctly rounded).
inline float __fmaf_rn(float a, float b, float c) { return std::fmaf(a, b, c); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
// Cache hints only: one memory, nothing cached per SM.
template <class T>
inline T __ldcg(const T* p) {
  return *p;
}
template <class T>
inline void __stcg(T* p, T v) {
  *p = v;
}

// CUDA's integer min/max overloads (one type on both sides, as the kernels use them).
#define EMU_MINMAX(T)                                 \
  inline T min(T a, T b) { return a < b ? a : b; }   \
  inline T max(T a, T b) { return a > b ? a : b; }
EMU_MINMAX(int)
EMU_MINMAX(unsigned)
EMU_MINMAX(long)
EMU_MINMAX(long long)
#undef EMU_MINMAX
using ::fmin;
using ::floor;
using ::sqrt;

struct __half {
  uint16_t x;
};
struct __nv_bfloat16 {
  uint16_t x;
};
inline float __half2float(__half h) {
  _Float16 f;
  std::memcpy(&f, &h.x, 2);
  return static_cast<float>(f);
}
inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t u = static_cast<uint32_t>(h.x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ------------------------------------------------------------------------ fibers

// Saves the callee-saved registers on the current stack, stores its pointer in *from_sp and
// resumes the stack to_sp (cuda_emu.cpp). A hand-written switch: swapcontext makes a
// sigprocmask system call per switch, and a fps launch switches millions of times.
extern "C" void emu_ctx_switch(void** from_sp, void* to_sp);

struct EmuBlock;

struct EmuFiber {
  void* sp = nullptr;
  char* stack = nullptr;
  void* asan_fake_stack = nullptr;
  bool done = false;
  bool blocked = false;
  unsigned block_id = 0;
  int tid = 0;  // thread index in the block
  EmuBlock* block = nullptr;
};

struct EmuScheduler {
  static constexpr size_t kStackBytes = size_t(256) << 10;
  std::vector<EmuFiber*> runnable;
  EmuFiber* current = nullptr;
  void* main_sp = nullptr;
  void* main_fake_stack = nullptr;
  const void* main_stack_bottom = nullptr;
  size_t main_stack_size = 0;
  std::mt19937 rng{static_cast<unsigned>(emu_env("EMU_SEED", 1))};
  std::vector<char*> free_stacks;  // reused across launches: allocating them dominates small launches
};
inline EmuScheduler emu_sched;

// ASan must be told about every stack switch, or it reports the fibers' frames as overflows.
inline void emu_switch(void** save_sp, void* to_sp, void** fake_save, const void* to_bottom, size_t to_size) {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_start_switch_fiber(fake_save, to_bottom, to_size);
  emu_ctx_switch(save_sp, to_sp);
  __sanitizer_finish_switch_fiber(*fake_save, nullptr, nullptr);
#else
  (void)fake_save, (void)to_bottom, (void)to_size;
  emu_ctx_switch(save_sp, to_sp);
#endif
}

// The running fiber waits until a barrier makes it runnable again.
inline void emu_block_current() {
  EmuFiber* f = emu_sched.current;
  f->blocked = true;
  emu_switch(&f->sp, emu_sched.main_sp, &f->asan_fake_stack, emu_sched.main_stack_bottom,
             emu_sched.main_stack_size);
}

struct EmuBarrier {
  int expected = 0;
  int arrived = 0;
  std::vector<EmuFiber*> waiters;

  void release() {
    arrived = 0;
    for (EmuFiber* f : waiters) {
      f->blocked = false;
      emu_sched.runnable.push_back(f);
    }
    waiters.clear();
  }
  void arrive_and_wait() {
    if (++arrived == expected) {
      release();
      return;
    }
    waiters.push_back(emu_sched.current);
    emu_block_current();
  }
  // A thread that exits no longer takes part. (On a GPU, __syncthreads after some threads of the
  // block exited is undefined; the kernels here only return early before their last barrier.)
  void leave() {
    --expected;
    if (arrived > 0 && arrived == expected) release();
  }
};

struct EmuWarp {
  EmuBarrier bar;
  // Two generations of slots: a lane may enter the next collective while a slower lane still
  // reads the previous one's values.
  uint64_t slot[2][32];
  int op[2][32];
  long count[32] = {};  // collectives each lane has entered
  unsigned exited = 0;
};

struct EmuBlock {
  EmuBarrier bar;
  std::vector<EmuWarp> warps;
  // __shared__ arrays of this block, keyed by their declaration (patch.py).
  std::map<const void*, std::unique_ptr<unsigned char[]>> shared;
};

struct EmuGrid {
  EmuBarrier bar;
  bool cooperative = false;
};
inline EmuGrid* emu_grid = nullptr;

inline EmuFiber& emu_self() { return *emu_sched.current; }

// Storage of a __shared__ declaration for the running block, created on first use and filled
// with a pattern: shared memory starts uninitialised.
template <class A>
A& emu_shared(const void* tag) {
  auto& slot = emu_self().block->shared[tag];
  if (!slot) {
    slot.reset(new unsigned char[sizeof(A)]);
    std::memset(slot.get(), 0xCD, sizeof(A));
  }
  return *reinterpret_cast<A*>(slot.get());
}

inline void __syncthreads() { emu_self().block->bar.arrive_and_wait(); }

// One warp collective: each lane contributes `value` and receives all 32 lanes' values. Fails
// on what CUDA leaves undefined or this emulation does not model: a partial mask, lanes of the
// mask that have exited, lanes that reach different collectives (divergence).
enum EmuWarpOp { kOpShfl = 1, kOpShflDown, kOpShflUp, kOpBallot, kOpSyncwarp };
inline const uint64_t* emu_warp_exchange(unsigned mask, uint64_t value, int op) {
  EmuFiber& f = emu_self();
  EmuWarp& w = f.block->warps[f.tid / 32];
  const int lane = f.tid & 31;
  if (mask != 0xffffffffu) emu_fail("warp collective with a partial mask (not emulated)");
  if (w.exited) emu_fail("warp collective with a full mask after some lanes of the warp exited");
  const long n = w.count[lane]++;
  const int gen = static_cast<int>(n & 1);
  w.slot[gen][lane] = value;
  w.op[gen][lane] = op;
  w.bar.arrive_and_wait();
  for (int l = 0; l < 32; ++l) {
    if (w.count[l] < n + 1 && (w.exited >> l & 1)) {
      emu_fail("a lane of the warp exited while the others wait in a full-mask collective");
    }
    if (w.op[gen][l] != op || w.count[l] < n + 1) {
      char msg[160];
      std::snprintf(msg, sizeof msg, "warp divergence: block %u lane %d in collective %d, lane %d in %d",
                    f.block_id, lane, op, l, w.op[gen][l]);
      emu_fail(msg);
    }
  }
  return w.slot[gen];
}
template <class T>
inline uint64_t emu_bits(T v) {
  static_assert(sizeof(T) <= 8, "warp collectives move at most 8 bytes");
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}
template <class T>
inline T emu_from_bits(uint64_t u) {
  T v;
  std::memcpy(&v, &u, sizeof(T));
  return v;
}
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  if (width != 32) emu_fail("shuffle width != 32 (not emulated)");
  return emu_from_bits<T>(emu_warp_exchange(mask, emu_bits(v), kOpShfl)[src & 31]);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  if (width != 32) emu_fail("shuffle width != 32 (not emulated)");
  const uint64_t* s = emu_warp_exchange(mask, emu_bits(v), kOpShflDown);
  const unsigned lane = static_cast<unsigned>(emu_self().tid & 31);
  return lane + delta < 32 ? emu_from_bits<T>(s[lane + delta]) : v;
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  if (width != 32) emu_fail("shuffle width != 32 (not emulated)");
  const uint64_t* s = emu_warp_exchange(mask, emu_bits(v), kOpShflUp);
  const int lane = emu_self().tid & 31;
  return lane >= static_cast<int>(delta) ? emu_from_bits<T>(s[lane - delta]) : v;
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  const uint64_t* s = emu_warp_exchange(mask, predicate ? 1 : 0, kOpBallot);
  unsigned r = 0;
  for (int l = 0; l < 32; ++l) r |= static_cast<unsigned>(s[l] & 1) << l;
  return r;
}
inline void __syncwarp(unsigned mask = 0xffffffffu) { emu_warp_exchange(mask, 0, kOpSyncwarp); }

namespace cooperative_groups {
struct grid_group {
  void sync() {
    if (!emu_grid->cooperative) emu_fail("grid.sync() in a kernel not launched cooperatively");
    emu_grid->bar.arrive_and_wait();
  }
};
inline grid_group this_grid() { return {}; }
}  // namespace cooperative_groups

// ------------------------------------------------------------------------ launches

// The body every fiber of the current launch runs (the kernel with its arguments).
inline const std::function<void()>* emu_body = nullptr;

[[noreturn]] inline void emu_fiber_main() {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(nullptr, &emu_sched.main_stack_bottom, &emu_sched.main_stack_size);
#endif
  (*emu_body)();
  EmuFiber& f = emu_self();
  EmuWarp& w = f.block->warps[f.tid / 32];
  w.exited |= 1u << (f.tid & 31);
  w.bar.leave();
  f.block->bar.leave();
  emu_grid->bar.leave();
  f.done = true;
  void* unused_sp;
#if defined(__SANITIZE_ADDRESS__)
  // nullptr: this fiber's stack is finished, ASan may drop its fake frames.
  __sanitizer_start_switch_fiber(nullptr, emu_sched.main_stack_bottom, emu_sched.main_stack_size);
#endif
  emu_ctx_switch(&unused_sp, emu_sched.main_sp);
  __builtin_unreachable();
}

// Runs the fibers until none is runnable; fails if some never finished (they wait on a barrier
// the others will not reach).
inline void emu_schedule(std::vector<EmuFiber>& fibers) {
  EmuScheduler& S = emu_sched;
  S.runnable.clear();
  for (EmuFiber& f : fibers) S.runnable.push_back(&f);
  size_t done = 0;
  while (!S.runnable.empty()) {
    const size_t pick = S.rng() % S.runnable.size();
    EmuFiber* f = S.runnable[pick];
    S.runnable[pick] = S.runnable.back();
    S.runnable.pop_back();
    S.current = f;
    threadIdx = dim3(static_cast<unsigned>(f->tid));
    blockIdx = dim3(f->block_id);
    emu_switch(&S.main_sp, f->sp, &S.main_fake_stack, f->stack, EmuScheduler::kStackBytes);
    if (f->done) ++done;
  }
  S.current = nullptr;
  if (done != fibers.size()) {
    char msg[160];
    std::snprintf(msg, sizeof msg, "deadlock: %zu of %zu threads finished, the others wait on a barrier", done,
                  fibers.size());
    emu_fail(msg);
  }
}

// Runs the blocks `ids` concurrently (all threads of all of them are fibers of one schedule).
inline void emu_run_blocks(const std::vector<unsigned>& ids, int threads, EmuGrid& grid) {
  EmuScheduler& S = emu_sched;
  grid.bar = EmuBarrier{};
  grid.bar.expected = static_cast<int>(ids.size()) * threads;
  std::vector<EmuBlock> blocks(ids.size());
  std::vector<EmuFiber> fibers(ids.size() * threads);
  for (size_t b = 0; b < ids.size(); ++b) {
    blocks[b].bar.expected = threads;
    blocks[b].warps.resize(threads / 32);
    for (EmuWarp& w : blocks[b].warps) w.bar.expected = 32;
    for (int t = 0; t < threads; ++t) {
      EmuFiber& f = fibers[b * threads + t];
      f.block_id = ids[b];
      f.tid = t;
      f.block = &blocks[b];
      if (S.free_stacks.empty()) S.free_stacks.push_back(static_cast<char*>(std::malloc(EmuScheduler::kStackBytes)));
      f.stack = S.free_stacks.back();
      S.free_stacks.pop_back();
#if defined(__SANITIZE_ADDRESS__)
      // A finished fiber never returns from emu_fiber_main: its frame's redzones stay poisoned.
      ASAN_UNPOISON_MEMORY_REGION(f.stack, EmuScheduler::kStackBytes);
#endif
      // Initial frame for emu_ctx_switch: six callee-saved registers, then the return address.
      void** sp = reinterpret_cast<void**>(
          (reinterpret_cast<uintptr_t>(f.stack) + EmuScheduler::kStackBytes) & ~uintptr_t(15));
      *--sp = nullptr;  // emu_fiber_main's (never used) return address; keeps the ABI alignment
      *--sp = reinterpret_cast<void*>(&emu_fiber_main);
      for (int r = 0; r < 6; ++r) *--sp = nullptr;
      f.sp = sp;
    }
  }
  emu_schedule(fibers);
  for (EmuFiber& f : fibers) S.free_stacks.push_back(f.stack);
}

// A launch of `body` on grid x block. Cooperative: all blocks resident at once. Otherwise the
// blocks run one after another in a random order, a legal schedule for independent blocks.
inline void emu_run_grid(dim3 grid, dim3 block, bool cooperative, const std::function<void()>& body) {
  const long threads = long(block.x) * block.y * block.z;
  if (grid.x < 1 || grid.x > 0x7fffffffu || grid.y < 1 || grid.y > 65535 || grid.z < 1 || grid.z > 65535 ||
      threads < 1 || threads > 1024) {
    emu_last_error = cudaErrorInvalidConfiguration;
    return;
  }
  if (grid.y != 1 || grid.z != 1 || block.y != 1 || block.z != 1) emu_fail("only 1-D launches are emulated");
  if (threads % 32) emu_fail("block size not a multiple of 32 (partial warps are not emulated)");
  blockDim = block;
  gridDim = grid;
  EmuGrid g;
  g.cooperative = cooperative;
  emu_grid = &g;
  emu_body = &body;
  std::vector<unsigned> ids(grid.x);
  std::iota(ids.begin(), ids.end(), 0u);
  if (cooperative) {
    emu_run_blocks(ids, static_cast<int>(threads), g);
  } else {
    std::shuffle(ids.begin(), ids.end(), emu_sched.rng);
    for (unsigned id : ids) emu_run_blocks({id}, static_cast<int>(threads), g);
  }
  emu_body = nullptr;
  emu_grid = nullptr;
}

struct EmuCfg {
  dim3 grid, block;
  EmuCfg(dim3 g, dim3 b, size_t dynamic_smem = 0, cudaStream_t = nullptr) : grid(g), block(b) {
    if (dynamic_smem) emu_fail("dynamic shared memory is not emulated");
  }
};

// kernel<<<grid, block, smem, stream>>>(args...) after patch.py. The arguments are converted to
// the kernel's parameter types once, as at a launch, and each thread gets its own copy.
template <class... P, class... A>
void emu_launch(void (*kernel)(P...), EmuCfg cfg, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel argument count");
  const std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  emu_run_grid(cfg.grid, cfg.block, false, [&] {
    auto copy = params;
    std::apply(kernel, copy);
  });
}

// cudaLaunchCooperativeKernel gets the kernel as a const void* and its arguments as void**:
// patch.py rewrites reinterpret_cast<const void*>(&kernel) into emu_kernel_ptr(&kernel), which
// records how to call that kernel from such an argument array.
using EmuInvoker = void (*)(const void* kernel, void** args);
inline std::map<const void*, EmuInvoker>& emu_invokers() {
  static std::map<const void*, EmuInvoker> m;
  return m;
}
template <class... P, size_t... I>
void emu_invoke(const void* kernel, void** args, std::index_sequence<I...>) {
  auto fn = reinterpret_cast<void (*)(P...)>(const_cast<void*>(kernel));
  fn(*static_cast<std::decay_t<P>*>(args[I])...);
}
template <class... P>
const void* emu_kernel_ptr(void (*kernel)(P...)) {
  const void* key = reinterpret_cast<const void*>(kernel);
  emu_invokers()[key] = [](const void* k, void** args) { emu_invoke<P...>(k, args, std::index_sequence_for<P...>{}); };
  return key;
}

inline cudaError_t cudaLaunchCooperativeKernel(const void* kernel, dim3 grid, dim3 block, void** args,
                                               size_t dynamic_smem, cudaStream_t) {
  const auto it = emu_invokers().find(kernel);
  if (it == emu_invokers().end()) {
    emu_fail("cooperative launch of a kernel whose address patch.py did not see taken as const void*");
  }
  if (dynamic_smem) emu_fail("dynamic shared memory is not emulated");
  // The device's limit: every block must be resident at once.
  if (long(grid.x) * grid.y * grid.z > long(emu_env("EMU_OCC", 2)) * emu_env("EMU_SMS", 2)) {
    return cudaErrorCooperativeLaunchTooLarge;
  }
  const EmuInvoker invoke = it->second;
  emu_run_grid(grid, block, true, [&] { invoke(kernel, args); });
  return cudaGetLastError();
}

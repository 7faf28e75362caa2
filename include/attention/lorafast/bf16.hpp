// bfloat16: the top 16 bits of an IEEE binary32 (8 exponent bits, 7 stored mantissa
// bits). Storage only: lorafast never does arithmetic in bf16; products of two bf16
// values are exact in f32, and every sum is accumulated in f32.
#pragma once

#include <bit>
#include <cstdint>

namespace lorafast {

struct BFloat16 {
  std::uint16_t bits = 0;
};

// Exact for every input (zeros, subnormals, infinities, NaN payloads).
inline float to_f32(BFloat16 x) { return std::bit_cast<float>(static_cast<std::uint32_t>(x.bits) << 16); }

// Round to nearest, ties to even, as PyTorch's tensor.to(torch.bfloat16) and the
// vcvtneps2bf16 instruction round; a NaN stays a (quiet) NaN with its sign.
inline BFloat16 to_bf16(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<std::uint16_t>((u >> 16) | 0x0040u)};
  return {static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

// Whether this CPU has bf16 dot-product instructions (AVX512-BF16), read at run time
// whatever the build's -march.
bool cpu_has_bf16_arithmetic();
// Whether bf16 products run on them now: the CPU has them and they are not turned
// off. Off, bf16 operands are widened to f32 and multiplied there (the path of CPUs
// without them, which tests force with set_bf16_arithmetic(false), or a process with
// the environment variable LORAFAST_BF16_ARITHMETIC=0 from its start). Process-wide.
bool bf16_arithmetic();
void set_bf16_arithmetic(bool on);

}  // namespace lorafast

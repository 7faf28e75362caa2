// The decoder's LM head and loss over the rows that predict something. Instruction
// data leaves most rows without a target (prompts, padding, document ends): those
// rows are gathered out before the head, whose [rows, V] logits are the costliest
// product of a step with a large vocabulary.
#include <algorithm>

#include "model/decoder_activations.hpp"

namespace lorafast {

template <class T>
double decoder_head_loss(const DecoderView<T>& m, const DecoderActivations<T>& act, T* d_h, T* d_wte) {
  const std::int64_t d = m.spec.dim, rows = act.rows;
  std::vector<std::int64_t> kept;  // the rows with a target, when some have none
  const bool all = std::none_of(act.targets.begin(), act.targets.end(), [](std::int32_t t) { return t == no_target; });
  if (!all)
    for (std::int64_t r = 0; r < rows; ++r)
      if (act.targets[static_cast<std::size_t>(r)] != no_target) kept.push_back(r);
  const auto count = all ? rows : static_cast<std::int64_t>(kept.size());
  if (d_h != nullptr && !all) std::fill(d_h, d_h + rows * d, T(0));
  if (count == 0) {
    if (d_wte != nullptr) std::fill(d_wte, d_wte + m.spec.vocab * d, T(0));
    return 0.0;
  }

  const FrozenValues<T> head = frozen<T>(*m.tensors.head);
  LmHeadLossParams<T> p;
  p.rows = count;
  p.dim = d;
  p.vocab = m.spec.vocab;
  p.wte = head.values;
  p.wte_bf16 = head.bf16;
  p.normalizer = act.loss_tokens;
  p.softcap = m.spec.logit_softcap;
  p.d_wte = d_wte;
  if (all) {
    p.h = act.final_out.data();
    p.targets = act.targets.data();
    p.d_h = d_h;
    return lm_head_loss(p);
  }
  ScratchVector<T> h(static_cast<std::size_t>(count * d)), d_kept(d_h != nullptr ? h.size() : 0);
  std::vector<std::int32_t> targets(static_cast<std::size_t>(count));
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t r = kept[static_cast<std::size_t>(i)];
    std::copy_n(act.final_out.data() + r * d, d, h.data() + i * d);
    targets[static_cast<std::size_t>(i)] = act.targets[static_cast<std::size_t>(r)];
  }
  p.h = h.data();
  p.targets = targets.data();
  p.d_h = d_h != nullptr ? d_kept.data() : nullptr;
  const double loss = lm_head_loss(p);
  if (d_h != nullptr) {
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < count; ++i)
      std::copy_n(d_kept.data() + i * d, d, d_h + kept[static_cast<std::size_t>(i)] * d);
  }
  return loss;
}

template double decoder_head_loss<float>(const DecoderView<float>&, const DecoderActivations<float>&, float*, float*);
template double decoder_head_loss<double>(const DecoderView<double>&, const DecoderActivations<double>&, double*,
                                          double*);

}  // namespace lorafast

// The evaluation loss of instruction data: the mean over the rows' predicted tokens.
#include <algorithm>
#include <numeric>

#include "lorafast/llama.hpp"
#include "lorafast/sft_rows.hpp"

namespace lorafast {
namespace {

template <class W, class T>
EvalResult evaluate_any(const W& weights, const GptLora<T>* lora, const SftRows& rows, std::int64_t max_rows,
                        std::int64_t batch) {
  const std::int64_t count = max_rows > 0 ? std::min(max_rows, rows.rows()) : rows.rows();
  std::vector<TokenBatch> batches;
  std::int64_t predicted = 0;
  for (std::int64_t first = 0; first < count; first += batch) {
    std::vector<std::int64_t> indices(static_cast<std::size_t>(std::min(batch, count - first)));
    std::iota(indices.begin(), indices.end(), first);
    batches.push_back(sft_batch(rows, indices));
    predicted += batches.back().targeted();
  }
  LF_CHECK(predicted > 0, ErrorKind::bad_input, "no token to evaluate: the ", count,
           " rows hold no label token after a document's first");
  double loss = 0;  // each batch's summed losses over all the predicted tokens
  for (auto& b : batches) {
    b.loss_tokens = predicted;
    loss += model_loss(weights, lora, b);
  }
  return {loss, predicted};
}

}  // namespace

template <class T>
EvalResult evaluate_rows(const GptWeights<T>& weights, const GptLora<T>* lora, const SftRows& rows,
                         std::int64_t max_rows, std::int64_t batch) {
  return evaluate_any(weights, lora, rows, max_rows, batch);
}

template <class T>
EvalResult evaluate_rows(const LlamaWeights<T>& weights, const GptLora<T>* lora, const SftRows& rows,
                         std::int64_t max_rows, std::int64_t batch) {
  return evaluate_any(weights, lora, rows, max_rows, batch);
}

#define LORAFAST_INSTANTIATE(W, T)                                                                       \
  template EvalResult evaluate_rows<T>(const W<T>&, const GptLora<T>*, const SftRows&, std::int64_t, \
                                       std::int64_t);
LORAFAST_INSTANTIATE(GptWeights, float)
LORAFAST_INSTANTIATE(GptWeights, double)
LORAFAST_INSTANTIATE(LlamaWeights, float)
LORAFAST_INSTANTIATE(LlamaWeights, double)
#undef LORAFAST_INSTANTIATE

}  // namespace lorafast

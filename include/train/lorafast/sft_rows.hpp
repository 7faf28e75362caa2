// Instruction examples as training rows (INTERFACE.md "Instruction data"): packed
// as TRL's pack_dataset packs them, or one example per row, and the token batches
// the model trains and evaluates on: each example a document whose positions start
// at 0, attending only within itself, its last token predicting nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lorafast/gpt_loss.hpp"
#include "lorafast/instruction_data.hpp"
#include "lorafast/train_data.hpp"

namespace lorafast {

// TRL packs through datasets.map's batches of 1000 examples: so does pack_examples,
// and its rows are TRL's.
constexpr std::size_t trl_pack_group = 1000;

struct SftRows {
  std::vector<SftExample> docs;         // the documents, row after row
  std::vector<std::int64_t> row_start;  // rows + 1 offsets into docs

  std::int64_t rows() const { return static_cast<std::int64_t>(row_start.size()) - 1; }
  std::span<const SftExample> row(std::int64_t r) const;
  std::int64_t row_tokens(std::int64_t r) const;
  std::int64_t tokens() const;        // in every row
  std::int64_t label_tokens() const;  // tokens some row position predicts (a document's first never is)
  // Packed rows of seq_len tokens: the share of their positions that are padding.
  double padding_share(std::int64_t seq_len) const;
  // "<rows> rows (packing <name>, padding <share>%)"; the padding only when packed.
  std::string line(Packing packing, std::int64_t seq_len) const;
};

// TRL's pack_dataset (trl/data_utils.py) with `packing`, group by group of
// trl_pack_group examples: bfd sorts a group's examples by length (longest first,
// ties in order) and puts each into the fullest row it fits (among equally full
// rows the one filled first), else into a new row; rows come in the order they were
// opened. Empty examples are skipped.
SftRows pack_examples(std::vector<SftExample> examples, std::int64_t seq_len, Packing packing);

// Rows `indices` as one batch: windows of T = the longest row's tokens, each row's
// documents with their own positions and attention (padding after the last one is
// a document of its own that predicts nothing), every document's last token
// predicting nothing. loss_tokens is left 0.
TokenBatch sft_batch(const SftRows& rows, std::span<const std::int64_t> indices);

// The rows of micro-batch `micro` of update `step` (1-based), `batch` of them: the
// rows are visited epoch after epoch, each epoch in its own seeded order (a
// Fisher-Yates shuffle of SplitMix64(seed, epoch)), micro-batches taking consecutive
// slices, so the rows depend only on (seed, step, micro) and a resumed run
// continues exactly.
std::vector<std::int64_t> sft_row_indices(std::int64_t rows, std::int64_t batch, std::int64_t grad_accum,
                                          std::uint64_t seed, std::int64_t step, std::int64_t micro);

// The data of a fine-tuning run on instruction data: training and validation rows.
struct SftSplit {
  SftRows train, val;
};

// The last floor(examples * val_fraction) examples validate; each part packed alone.
SftSplit split_and_pack(std::vector<SftExample> examples, double val_fraction, std::int64_t seq_len,
                        Packing packing);

// The mean loss over the predicted tokens of rows [0, max_rows) (all when max_rows
// <= 0), `batch` rows per forward pass; EvalResult::tokens counts the predicted
// tokens. Error(bad_input) when they are none.
template <class T>
EvalResult evaluate_rows(const GptWeights<T>& weights, const GptLora<T>* lora, const SftRows& rows,
                         std::int64_t max_rows = 0, std::int64_t batch = 8);
template <class T>
EvalResult evaluate_rows(const LlamaWeights<T>& weights, const GptLora<T>* lora, const SftRows& rows,
                         std::int64_t max_rows = 0, std::int64_t batch = 8);

// `lorafast prepare`'s file: one JSON object per row, {"input_ids": [...], "labels":
// [...], "position_ids": [0, 1, ..., 0, 1, ...], "seq_lengths": [n, ...]} (TRL's
// packed dataset; unpacked, one document per row), written atomically.
void write_sft_jsonl(const std::filesystem::path& path, const SftRows& rows);

// Identifies the rows of a checkpoint's run: every row's documents, ids and labels.
DataFingerprint fingerprint(const SftSplit& data);

}  // namespace lorafast

// Packing instruction examples into rows, and rows into token batches.
#include "lorafast/sft_rows.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <map>
#include <numeric>

#include "lorafast/gpt_generate.hpp"

namespace lorafast {

std::optional<Packing> parse_packing(std::string_view name) {
  if (name == "bfd") return Packing::bfd;
  if (name == "wrapped") return Packing::wrapped;
  if (name == "none") return Packing::none;
  return std::nullopt;
}

const char* packing_name(Packing packing) {
  switch (packing) {
    case Packing::bfd: return "bfd";
    case Packing::wrapped: return "wrapped";
    case Packing::none: return "none";
  }
  return "?";
}

std::span<const SftExample> SftRows::row(std::int64_t r) const {
  const auto first = static_cast<std::size_t>(row_start[static_cast<std::size_t>(r)]);
  const auto last = static_cast<std::size_t>(row_start[static_cast<std::size_t>(r + 1)]);
  return std::span<const SftExample>(docs).subspan(first, last - first);
}

std::int64_t SftRows::row_tokens(std::int64_t r) const {
  std::int64_t n = 0;
  for (const auto& doc : row(r)) n += static_cast<std::int64_t>(doc.input_ids.size());
  return n;
}

std::int64_t SftRows::tokens() const {
  std::int64_t n = 0;
  for (const auto& doc : docs) n += static_cast<std::int64_t>(doc.input_ids.size());
  return n;
}

std::int64_t SftRows::label_tokens() const {
  std::int64_t n = 0;
  for (const auto& doc : docs)
    if (!doc.labels.empty()) n += std::count_if(doc.labels.begin() + 1, doc.labels.end(), [](std::int32_t l) { return l != no_target; });
  return n;
}

double SftRows::padding_share(std::int64_t seq_len) const {
  return rows() == 0 ? 0.0 : 1.0 - static_cast<double>(tokens()) / static_cast<double>(rows() * seq_len);
}

std::string SftRows::line(Packing packing, std::int64_t seq_len) const {
  if (packing == Packing::none) return cat(rows(), " rows (packing none)");
  char share[32];
  std::snprintf(share, sizeof share, "%.2f%%", 100.0 * padding_share(seq_len));
  return cat(rows(), " rows of ", seq_len, " (packing ", packing_name(packing), ", padding ", share, ")");
}

namespace {

// One group's best-fit-decreasing rows, appended to `out` (TRL's _pack_bfd, whose
// segment tree finds the smallest free space that fits: here an ordered map of the
// free spaces of open rows, each with its rows in the order they reached it).
void pack_bfd(std::vector<SftExample> group, std::int64_t seq_len, SftRows& out) {
  std::erase_if(group, [](const SftExample& e) { return e.input_ids.empty(); });
  for (auto& e : group)
    if (static_cast<std::int64_t>(e.input_ids.size()) > seq_len) {
      e.input_ids.resize(static_cast<std::size_t>(seq_len));
      e.labels.resize(static_cast<std::size_t>(seq_len));
    }
  std::vector<std::size_t> order(group.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return group[a].input_ids.size() > group[b].input_ids.size(); });
  std::vector<std::vector<std::size_t>> bins;
  std::map<std::int64_t, std::deque<std::size_t>> free_space;  // space left (< seq_len, > 0) -> rows
  for (std::size_t i : order) {
    const auto length = static_cast<std::int64_t>(group[i].input_ids.size());
    std::size_t bin = bins.size();
    std::int64_t space = seq_len;
    if (auto fit = free_space.lower_bound(length); fit != free_space.end()) {
      space = fit->first;
      bin = fit->second.front();
      fit->second.pop_front();
      if (fit->second.empty()) free_space.erase(fit);
    } else {
      bins.emplace_back();
    }
    bins[bin].push_back(i);
    if (space - length > 0) free_space[space - length].push_back(bin);
  }
  for (const auto& bin : bins) {
    for (std::size_t i : bin) out.docs.push_back(std::move(group[i]));
    out.row_start.push_back(static_cast<std::int64_t>(out.docs.size()));
  }
}

// One group concatenated and cut every seq_len tokens (TRL's _pack_wrapped).
void pack_wrapped(const std::vector<SftExample>& group, std::int64_t seq_len, SftRows& out) {
  SftExample all;
  for (const auto& e : group) {
    all.input_ids.insert(all.input_ids.end(), e.input_ids.begin(), e.input_ids.end());
    all.labels.insert(all.labels.end(), e.labels.begin(), e.labels.end());
  }
  for (std::size_t start = 0; start < all.input_ids.size(); start += static_cast<std::size_t>(seq_len)) {
    const std::size_t end = std::min(all.input_ids.size(), start + static_cast<std::size_t>(seq_len));
    out.docs.push_back({{all.input_ids.begin() + static_cast<std::ptrdiff_t>(start), all.input_ids.begin() + static_cast<std::ptrdiff_t>(end)},
                        {all.labels.begin() + static_cast<std::ptrdiff_t>(start), all.labels.begin() + static_cast<std::ptrdiff_t>(end)}});
    out.row_start.push_back(static_cast<std::int64_t>(out.docs.size()));
  }
}

}  // namespace

SftRows pack_examples(std::vector<SftExample> examples, std::int64_t seq_len, Packing packing) {
  LF_CHECK(seq_len >= 1, ErrorKind::usage, "--seq-len must be positive, got ", seq_len);
  SftRows out;
  out.row_start.push_back(0);
  if (packing == Packing::none) {
    for (auto& e : examples)
      if (!e.input_ids.empty()) {
        out.docs.push_back(std::move(e));
        out.row_start.push_back(static_cast<std::int64_t>(out.docs.size()));
      }
    return out;
  }
  for (std::size_t first = 0; first < examples.size(); first += trl_pack_group) {
    const auto begin = examples.begin() + static_cast<std::ptrdiff_t>(first);
    const auto end = examples.begin() + static_cast<std::ptrdiff_t>(std::min(examples.size(), first + trl_pack_group));
    std::vector<SftExample> group(std::make_move_iterator(begin), std::make_move_iterator(end));
    packing == Packing::bfd ? pack_bfd(std::move(group), seq_len, out) : pack_wrapped(group, seq_len, out);
  }
  return out;
}

TokenBatch sft_batch(const SftRows& rows, std::span<const std::int64_t> indices) {
  LF_ASSERT(!indices.empty());
  std::int64_t tlen = 0;
  for (std::int64_t r : indices) tlen = std::max(tlen, rows.row_tokens(r));
  TokenBatch b;
  b.batch = static_cast<std::int64_t>(indices.size());
  b.seq_len = tlen;
  b.tokens.assign(static_cast<std::size_t>(b.batch * (tlen + 1)), 0);
  b.targets.assign(static_cast<std::size_t>(b.batch * tlen), no_target);
  b.cu_seqlens.push_back(0);
  for (std::int64_t n = 0; n < b.batch; ++n) {
    std::int64_t at = 0;
    for (const auto& doc : rows.row(indices[static_cast<std::size_t>(n)])) {
      const auto len = static_cast<std::int64_t>(doc.input_ids.size());
      std::copy(doc.input_ids.begin(), doc.input_ids.end(), b.tokens.begin() + n * (tlen + 1) + at);
      std::copy(doc.labels.begin() + 1, doc.labels.end(), b.targets.begin() + n * tlen + at);
      at += len;
      b.cu_seqlens.push_back(n * tlen + at);
    }
    if (at < tlen) b.cu_seqlens.push_back((n + 1) * tlen);  // the padding
  }
  return b;
}

std::vector<std::int64_t> sft_row_indices(std::int64_t rows, std::int64_t batch, std::int64_t grad_accum,
                                          std::uint64_t seed, std::int64_t step, std::int64_t micro) {
  LF_ASSERT(rows >= 1 && batch >= 1 && step >= 1 && micro >= 0 && micro < grad_accum);
  std::vector<std::int64_t> order;
  std::int64_t order_epoch = -1;
  std::vector<std::int64_t> out(static_cast<std::size_t>(batch));
  const std::int64_t first = ((step - 1) * grad_accum + micro) * batch;
  for (std::int64_t n = 0; n < batch; ++n) {
    const std::int64_t g = first + n, epoch = g / rows;
    if (epoch != order_epoch) {
      order.resize(static_cast<std::size_t>(rows));
      std::iota(order.begin(), order.end(), 0);
      SplitMix64Rng rng(splitmix64(splitmix64(seed) ^ static_cast<std::uint64_t>(epoch)));
      for (std::int64_t i = rows - 1; i > 0; --i)
        std::swap(order[static_cast<std::size_t>(i)],
                  order[static_cast<std::size_t>(rng.next() % static_cast<std::uint64_t>(i + 1))]);
      order_epoch = epoch;
    }
    out[static_cast<std::size_t>(n)] = order[static_cast<std::size_t>(g % rows)];
  }
  return out;
}

SftSplit split_and_pack(std::vector<SftExample> examples, double val_fraction, std::int64_t seq_len,
                        Packing packing) {
  LF_CHECK(std::isfinite(val_fraction) && val_fraction >= 0 && val_fraction < 1, ErrorKind::usage,
           "`val_fraction` must be in [0, 1), got ", val_fraction);
  const auto cut = static_cast<std::size_t>(std::floor(static_cast<double>(examples.size()) * (1.0 - val_fraction)));
  std::vector<SftExample> val(std::make_move_iterator(examples.begin() + static_cast<std::ptrdiff_t>(cut)),
                              std::make_move_iterator(examples.end()));
  examples.resize(cut);
  return {pack_examples(std::move(examples), seq_len, packing), pack_examples(std::move(val), seq_len, packing)};
}

DataFingerprint fingerprint(const SftSplit& data) {
  Tokens all;
  for (const SftRows* part : {&data.train, &data.val}) {
    all.push_back(static_cast<std::int32_t>(part->rows()));
    for (std::int64_t r = 0; r < part->rows(); ++r) {
      all.push_back(static_cast<std::int32_t>(part->row(r).size()));
      for (const auto& doc : part->row(r)) {
        all.push_back(static_cast<std::int32_t>(doc.input_ids.size()));
        all.insert(all.end(), doc.input_ids.begin(), doc.input_ids.end());
        all.insert(all.end(), doc.labels.begin(), doc.labels.end());
      }
    }
  }
  DataFingerprint f = fingerprint(all);
  f.tokens = static_cast<std::uint64_t>(data.train.tokens() + data.val.tokens());
  return f;
}

}  // namespace lorafast

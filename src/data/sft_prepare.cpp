// Instruction examples to ids and labels as TRL 1.x's SFTTrainer._prepare_dataset
// makes them with packing off (trl/trainer/sft_trainer.py): eos appended to text and
// to text completions, text tokenized as tokenizer(text) (with the post-processor's
// special tokens), conversations rendered with the chat template and tokenized
// without special tokens (apply_chat_template), the completion found where the prompt's ids and the whole
// example's ids diverge (common_prefix_length), labels -100 outside the completion
// (completion_only_loss) and outside the {% generation %} spans (assistant_only_loss),
// truncation keeping the start, and examples with no label token dropped.
#include <omp.h>

#include <algorithm>
#include <exception>

#include "core/json_read.hpp"
#include "core/text_file.hpp"
#include "lorafast/chat_template.hpp"
#include "lorafast/error.hpp"
#include "lorafast/instruction_data.hpp"
#include "lorafast/tokenizer.hpp"

namespace lorafast {

namespace {

using ojson = nlohmann::ordered_json;
constexpr auto bad = ErrorKind::bad_input;
constexpr std::uint64_t max_config_bytes = 64u << 20;

class Preparer {
 public:
  Preparer(const std::filesystem::path& model_dir, const SftOptions& options)
      : dir_(model_dir), options_(options), tokenizer_(Tokenizer::from_model_dir(model_dir)) {
    const auto path = model_dir / "tokenizer_config.json";
    if (std::filesystem::exists(path)) config_ = parse_ordered_json(read_text_file(path, max_config_bytes), path.string());
    LF_CHECK(config_.is_object(), bad, path.string(), ": must be an object");
  }

  // The example's ids and labels, not truncated.
  SftExample prepare(const InstructionExample& ex) {
    if (ex.conversational()) load_template();
    try {
      return labelled(ex);
    } catch (const Error& e) {
      throw Error(e.kind(), cat(ex.origin, ": ", e.what()));
    }
  }

 private:
  void load_template() {
    if (template_) return;
    template_ = options_.chat_template ? ChatTemplate::from_file(*options_.chat_template) : chat_template_of_model(dir_);
    LF_CHECK(!options_.assistant_only_loss || template_->marks_generation(), bad, template_->origin(),
             ": no {% generation %} blocks, which --assistant-only-loss needs (give a training template with "
             "--chat-template)");
  }

  // tokenizer.eos_token, which TRL appends to text that does not end with it.
  const std::string& eos() const {
    const auto it = config_.find("eos_token");
    const ojson* eos = it == config_.end() ? nullptr : it->is_object() && it->contains("content") ? &(*it)["content"] : &*it;
    LF_CHECK(eos != nullptr && eos->is_string(), bad, (dir_ / "tokenizer_config.json").string(),
             ": no 'eos_token', which ends text examples");
    return eos->get_ref<const std::string&>();
  }

  std::string with_eos(const ojson& text) const {
    std::string s = text.get<std::string>();
    if (!s.ends_with(eos())) s += eos();
    return s;
  }

  RenderedChat render(const InstructionExample& ex, const ojson& messages, bool add_generation_prompt) const {
    ojson variables = chat_variables(messages, ex.tools, nullptr, add_generation_prompt, config_, "the example");
    if (ex.template_kwargs.is_object())
      for (const auto& [k, v] : ex.template_kwargs.items()) variables[k] = v;
    return template_->render(variables);
  }

  SftExample labelled(const InstructionExample& ex) const {
    LF_CHECK(!options_.assistant_only_loss || ex.conversational(), ErrorKind::usage,
             "--assistant-only-loss needs conversational data, this is ", format_name(ex.format), " data");
    std::vector<std::int32_t> ids, prompt_ids;
    std::vector<std::int8_t> assistant;
    if (ex.format == InstructionFormat::text) {
      ids = tokenizer_.encode_with_special_tokens(with_eos(ex.input));
    } else if (ex.format == InstructionFormat::prompt_completion) {
      const std::string prompt = ex.input.get<std::string>();
      prompt_ids = tokenizer_.encode_with_special_tokens(prompt);
      ids = tokenizer_.encode_with_special_tokens(prompt + with_eos(ex.completion));
    } else {
      ojson messages = ex.input;
      if (ex.prompt_completion()) {
        prompt_ids = tokenizer_.encode(render(ex, ex.input, true).text);
        messages.insert(messages.end(), ex.completion.begin(), ex.completion.end());
      }
      const RenderedChat chat = render(ex, messages, false);
      ids = tokenizer_.encode(chat.text);
      if (options_.assistant_only_loss) {
        assistant = assistant_masks(tokenizer_, chat.text, ids, chat.generation);
        LF_CHECK(std::find(assistant.begin(), assistant.end(), 1) != assistant.end(), bad,
                 "no assistant tokens: the template's {% generation %} blocks mark none of this example");
      }
    }
    const auto prefix = std::mismatch(prompt_ids.begin(), prompt_ids.end(), ids.begin(), ids.end());
    const std::size_t prompt_length =
        options_.completion_only_loss.value_or(true) ? static_cast<std::size_t>(prefix.second - ids.begin()) : 0;
    SftExample out{ids, ids};
    for (std::size_t i = 0; i < ids.size(); ++i)
      if (i < prompt_length || (!assistant.empty() && assistant[i] == 0)) out.labels[i] = ignore_label;
    return out;
  }

  std::filesystem::path dir_;
  const SftOptions& options_;
  Tokenizer tokenizer_;
  ojson config_ = ojson::object();
  std::optional<ChatTemplate> template_;
};

}  // namespace

std::string SftSummary::line(std::int64_t seq_len) const {
  const std::int64_t dropped = dropped_unlabelled + dropped_truncated;
  return cat(examples, " examples in ", files, files == 1 ? " file, " : " files, ", dropped, " dropped (",
             dropped_unlabelled, " with no label tokens, ", dropped_truncated,
             " with none left after truncation), ", truncated, " truncated to ", seq_len, " tokens; ",
             examples - dropped, " kept, ", tokens, " tokens, ", label_tokens, " label tokens");
}

namespace {

// Drops, truncates and counts one prepared example into `out`, in file order.
void keep(SftExample&& e, const SftOptions& options, SftData& out) {
  SftSummary& s = out.summary;
  const auto seq_len = static_cast<std::size_t>(options.seq_len);
  const auto trained = [&] {
    return std::any_of(e.labels.begin(), e.labels.end(), [](std::int32_t l) { return l != ignore_label; });
  };
  const bool drop = options.packing == Packing::none;  // packing keeps them, as TRL
  if (!trained() && drop) {
    ++s.dropped_unlabelled;
    return;
  }
  // bfd truncates as packing off does (TRL in its packer); wrapped cuts the concatenation instead.
  if (e.input_ids.size() > seq_len && options.packing != Packing::wrapped) {
    ++s.truncated;
    e.input_ids.resize(seq_len);
    e.labels.resize(seq_len);
    if (!trained() && drop) {
      ++s.dropped_truncated;
      return;
    }
  }
  s.tokens += static_cast<std::int64_t>(e.input_ids.size());
  s.label_tokens += std::count_if(e.labels.begin(), e.labels.end(), [](std::int32_t l) { return l != ignore_label; });
  out.examples.push_back(std::move(e));
}

// Examples are rendered and tokenized this many at a time, in parallel (each thread
// its own Preparer), then kept in file order: the memory of one chunk, and the first
// bad example in the file is the one reported.
constexpr std::size_t chunk_examples = 1024;

}  // namespace

SftData prepare_instruction_data(const std::filesystem::path& data, const std::filesystem::path& model_dir,
                                 const SftOptions& options) {
  LF_CHECK(options.seq_len > 0, ErrorKind::usage, "--seq-len must be positive, got ", options.seq_len);
  std::vector<std::optional<Preparer>> preparers(static_cast<std::size_t>(omp_get_max_threads()));
  preparers[0].emplace(model_dir, options);  // a missing tokenizer is reported before any data
  SftData out;
  std::vector<InstructionExample> chunk;
  std::vector<SftExample> prepared;
  std::vector<std::exception_ptr> failed;
  const auto flush = [&] {
    prepared.assign(chunk.size(), {});
    failed.assign(chunk.size(), nullptr);
#pragma omp parallel
    {
      auto& preparer = preparers[static_cast<std::size_t>(omp_get_thread_num())];
#pragma omp for schedule(dynamic, 16)
      for (std::size_t i = 0; i < chunk.size(); ++i) try {
          if (!preparer) preparer.emplace(model_dir, options);
          prepared[i] = preparer->prepare(chunk[i]);
        } catch (...) {
          failed[i] = std::current_exception();
        }
    }
    for (std::size_t i = 0; i < chunk.size(); ++i) {
      if (failed[i]) std::rethrow_exception(failed[i]);
      keep(std::move(prepared[i]), options, out);
    }
    out.summary.examples += static_cast<std::int64_t>(chunk.size());
    chunk.clear();
  };
  try {
    out.summary.files = static_cast<std::int64_t>(for_each_instruction_example(data, [&](InstructionExample&& ex) {
      chunk.push_back(std::move(ex));
      if (chunk.size() == chunk_examples) flush();
    }));
  } catch (const Error&) {
    flush();  // an example before the bad line that fails is the first error
    throw;
  }
  flush();
  return out;
}

}  // namespace lorafast

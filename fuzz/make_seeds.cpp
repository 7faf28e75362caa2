// Writes the seed corpus of every harness into DIR/<harness>/: valid files made by
// the library's own writers (so the fuzzer starts from inputs that reach deep into
// each reader) and the hostile files of the issue that introduced the fuzzing.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "lorafast/case_spec.hpp"
#include "lorafast/chat_template.hpp"
#include "lorafast/cost_model.hpp"
#include "lorafast/grad_case.hpp"
#include "lorafast/instruction_data.hpp"
#include "lorafast/tokenizer.hpp"
#include "lorafast/pretrain.hpp"
#include "lorafast/train_checkpoint.hpp"

namespace lorafast::fuzz {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string as_string(const std::vector<std::byte>& bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// A safetensors file whose header is `header` (no data).
std::string raw_safetensors(const std::string& header) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header;
}

// A seed meant to be valid must be accepted, or the fuzzer starts from nothing.
template <class Read>
void require_accepted(const char* seed, Read&& read) {
  try {
    read();
  } catch (const Error& e) {
    std::fprintf(stderr, "lorafast_fuzz_seeds: the valid seed %s is rejected: %s\n", seed, e.what());
    std::exit(1);
  }
}

std::string deep(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

std::string with_field(std::string json_text, const std::string& key, const std::string& raw) {
  json_text.resize(json_text.find_last_of('}'));
  return json_text + ", \"" + key + "\": " + raw + "}";
}

void write_safetensors_seeds(const fs::path& dir, const std::string& weights) {
  write_file(dir / "tiny_model", weights);
  CaseSpec spec;
  spec.seq_len = 3;
  spec.head_dim = 2;
  spec.heads = 2;
  spec.rank = 1;
  write_file(dir / "grad_case", as_string(serialize_safetensors(tensors_from_grad_inputs(make_case(spec)))));
  write_file(dir / "metadata", as_string(serialize_safetensors({}, {{"format", "pt"}})));
  write_file(dir / "huge_number", raw_safetensors("{\"a\":1e400}"));
  write_file(dir / "list_of_lists", raw_safetensors("{\"x\":[[],[],[]]}"));
  write_file(dir / "deep", raw_safetensors("{\"x\":{\"dtype\":\"F32\",\"y\":" + deep(10000) + "}}"));
  write_file(dir / "hostile_name", raw_safetensors("{\"x\\n\\u001b[31m\":{}}"));
}

void write_model_seeds(const fs::path& dir, const std::string& weights) {
  const std::string config = gpt_config_json(tiny_model());
  write_file(dir / "tiny_model", config + '\0' + weights);
  require_accepted("gpt_model/tiny_model", [&] {
    gpt_weights_from_tensors<float>(parse_gpt_config(config, origin), parse_safetensors(as_bytes(weights), origin).tensors,
                                    origin);
  });
  write_file(dir / "config_only", config);
  const std::string huge = "{\"n_layer\": 4096, \"n_head\": 1, \"n_embd\": 65536, \"n_positions\": 16777216, "
                           "\"vocab_size\": 256, \"layer_norm_epsilon\": 1e-5}";
  write_file(dir / "huge_config_empty_weights", huge + '\0' + raw_safetensors("{}      "));
  write_file(dir / "deep_n_inner", with_field(config, "n_inner", deep(10000)) + '\0' + weights);
  write_file(dir / "extra_block_overflow", config + '\0' +
                                               as_string(serialize_safetensors(
                                                   {{"h.99999999999999999999.ln_1.weight", Tensor(DType::f32, {4})}})));
}

void write_adapter_seeds(const fs::path& dir, const fs::path& scratch) {
  LoraConfig lora;
  lora.rank = 2;
  lora.targets = {LoraTarget::attn_c_attn, LoraTarget::mlp_c_fc};
  save_peft_adapter(scratch / "adapter", init_gpt_lora<float>(tiny_model(), lora, 1));
  const std::string config = read_file(scratch / "adapter" / "adapter_config.json");
  const std::string tensors = read_file(scratch / "adapter" / "adapter_model.safetensors");
  write_file(dir / "adapter", config + '\0' + tensors);
  require_accepted("peft_adapter/adapter", [&] {
    peft_adapter_from_contents<float>(parse_peft_adapter_config(config, origin),
                                      parse_safetensors(as_bytes(tensors), origin), tiny_model(), origin);
  });
  write_file(dir / "deep_rank_pattern", with_field(config, "rank_pattern", "{\"a\": " + deep(10000) + "}") + '\0' +
                                            tensors);
  write_file(dir / "hostile_target", "{\"peft_type\": \"LORA\", \"r\": 2, \"target_modules\": [\"x\\n\\u001b[31m\"]}");
}

void write_checkpoint_seeds(const fs::path& dir, const fs::path& scratch) {
  LoraConfig lora;
  lora.rank = 1;
  const auto state = init_train_state<float>(tiny_model(), lora, 1);
  save_checkpoint(scratch / "checkpoint", Checkpoint<float>{state, TrainOptions{}, tiny_model(), {}, 0.1});
  const std::string file = read_file(scratch / "checkpoint");
  write_file(dir / "checkpoint", file);
  require_accepted("checkpoint/checkpoint", [&] {
    checkpoint_from_contents<float>(parse_safetensors(as_bytes(file), origin), tiny_model(), origin);
  });
  auto contents = read_safetensors(scratch / "checkpoint");
  const auto meta = nlohmann::json::parse(contents.metadata.at("lorafast.checkpoint"));
  for (const auto& [name, key, raw] : {std::tuple<const char*, const char*, const char*>{"steps_1e300", "steps", "1e300"},
                                       {"seq_len_1e19", "seq_len", "1e19"}, {"method_hostile", "method", "\"x\\n\"" }}) {
    auto edited = meta;
    edited["options"][key] = nlohmann::json::parse(raw);
    contents.metadata["lorafast.checkpoint"] = edited.dump();
    write_file(dir / name, as_string(serialize_safetensors(contents.tensors, contents.metadata)));
  }
  auto edited = meta;
  edited["val_fraction"] = 5;
  contents.metadata["lorafast.checkpoint"] = edited.dump();
  write_file(dir / "val_fraction_5", as_string(serialize_safetensors(contents.tensors, contents.metadata)));
}

void write_cost_model_seeds(const fs::path& dir, const fs::path& scratch) {
  CostModel model;
  model.threads = 2;
  save_cost_model(model, (scratch / "cost_model.json").string());
  const std::string text = read_file(scratch / "cost_model.json");
  write_file(dir / "cost_model", text);
  require_accepted("cost_model/cost_model", [&] { parse_cost_model(text, origin); });
  nlohmann::json j = nlohmann::json::parse(text);
  j["threads"] = 1e300;
  write_file(dir / "threads_1e300", j.dump());
}

void write_token_seeds(const fs::path& dir) {
  write_file(dir / "bytes", std::string(1, '\0') + "hello, world\n");
  write_file(dir / "uint16", std::string(1, '\1') + std::string("\x01\x00\x2b\x01\xff\x00", 6));
  write_file(dir / "int32", std::string(1, '\2') + std::string("\x05\x00\x00\x00\xff\xff\xff\xff", 8));
}

// Templates in the style of real chat templates (loops, namespace, macros, filters,
// generation blocks), each with a conversation after a NUL.
void write_chat_template_seeds(const fs::path& dir) {
  const std::string conversation =
      R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi é"},)"
      R"( {"role": "assistant", "content": "<think>x</think>Hello", "tool_calls": [{"type": "function",)"
      R"( "function": {"name": "f", "arguments": {"a": 1}}}]}], "tools": [{"type": "function", "function":)"
      R"( {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}]})";
  const std::pair<const char*, std::string> seeds[] = {
      {"chatml", "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] | trim "
                 "+ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"},
      {"namespace", "{%- set ns = namespace(last=-1, sys='') -%}\n{%- for m in messages -%}\n  {%- if m.role == "
                    "'system' -%}{%- set ns.sys = m.content -%}{%- elif m.role == 'user' -%}{%- set ns.last = "
                    "loop.index0 -%}{%- endif -%}\n{%- endfor -%}\n{{ ns.sys ~ ns.last }}{{ messages[1:] | length }}"},
      {"generation", "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}"
                     "{{ m['content'].split('</think>')[-1].lstrip() }}{{ eos_token }}{% endgeneration %}{% else %}"
                     "{{ m['content'] }}{% endif %}{% endfor %}"},
      {"tools", "{% macro render(p) %}{% for k, v in p.properties | dictsort %}{{ k }}:{{ v.type | upper }}"
                "{% if not loop.last %},{% endif %}{% endfor %}{% endmacro %}{% if tools is defined and tools %}"
                "{% for t in tools %}{{ t.function.name }}({{ render(t.function.parameters) }}){{ t | tojson }}"
                "{% endfor %}{% endif %}{% for m in messages if m.tool_calls is defined %}{{ m.tool_calls | "
                "map(attribute='function') | map(attribute='name') | join(',') }}{% endfor %}"},
      {"raises", "{% if messages[0]['role'] != 'system' %}{{ raise_exception('system first') }}{% endif %}"
                 "{{ messages | selectattr('role', 'equalto', 'user') | list | length }}{{ strftime_now('%Y') }}"},
  };
  for (const auto& [name, source] : seeds) {
    require_accepted(name, [&, name = name, &source = source] {
      ChatTemplate::parse(source, name).render(conversation_variables(conversation, name, {{"bos_token", "<s>"}}, true));
    });
    write_file(dir / name, source + std::string(1, '\0') + conversation);
  }
}

// One JSONL file per format of TRL's SFTTrainer (blank lines, tools as text, ShareGPT
// speakers, non-ASCII), each read whole as the harness reads it.
void write_instruction_data_seeds(const fs::path& dir) {
  const std::pair<const char*, std::string> seeds[] = {
      {"text", "{\"text\": \"The sky is blue.\"}\n\n{\"text\": \"Gr\u00fc\u00dfe \u65e5\u672c<|im_end|>\", \"id\": 2}\n"},
      {"prompt_completion", "{\"prompt\": \"2+2=\", \"completion\": \" 4\"}\r\n{\"prompt\": \"\", \"completion\": \"x\"}"},
      {"chat_prompt_completion", R"({"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],)"
                                 R"( "completion": [{"role": "assistant", "content": "Hello"}]})" "\n"},
      {"messages", R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]},)"
                   R"( {"role": "assistant", "content": null, "tool_calls": [{"function": {"name": "f"}}]}],)"
                   R"( "tools": "[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]"})" "\n"},
      {"sharegpt", R"({"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q"},)"
                   R"( {"from": "gpt", "value": "a", "weight": 1}]})" "\n"},
  };
  for (const auto& [name, jsonl] : seeds) {
    require_accepted(name, [&, name = name, &jsonl = jsonl] {
      InstructionFileReader reader(name);
      std::size_t line = 0, examples = 0;
      for (std::size_t begin = 0; begin <= jsonl.size();) {
        const std::size_t end = std::min(jsonl.find('\n', begin), jsonl.size());
        examples += reader.read_line(std::string_view(jsonl).substr(begin, end - begin), ++line).has_value();
        begin = end + 1;
      }
      LF_CHECK(examples > 0, ErrorKind::bad_input, "no examples");
    });
    write_file(dir / name, jsonl);
  }
}

// Byte-level BPE tokenizers as the tokenizers library writes them (GPT-2 / Llama 3
// style: ByteLevel or Split + ByteLevel pre-tokenizers, added special tokens, a
// TemplateProcessing post-processor, an NFC normalizer), each with a text after a NUL.
void write_tokenizer_seeds(const fs::path& dir) {
  nlohmann::json vocab = nlohmann::json::object();
  int id = 0;
  for (const char* piece : {"a", "b", "c", "d", "e", "h", "l", "o", "r", "w", "\u0120", "he", "ll", "hell", "hello",
                            "\u0120w", "\u0120wor", "or", "ld", "\u0120world"})
    vocab[nlohmann::json::parse("\"" + std::string(piece) + "\"").get<std::string>()] = id++;
  const nlohmann::json merges = {"h e", "l l", "he ll", "hell o", "\u0120 w", "o r", "\u0120w or", "l d",
                                 "\u0120wor ld"};
  const auto tokenizer = [&](const nlohmann::json& pre_tokenizer, const nlohmann::json& normalizer,
                             const nlohmann::json& post_processor) {
    nlohmann::json parsed_merges = nlohmann::json::array();
    for (const auto& m : merges) parsed_merges.push_back(nlohmann::json::parse("\"" + m.get<std::string>() + "\""));
    return nlohmann::json{
        {"version", "1.0"},
        {"added_tokens", {{{"id", id}, {"content", "<|eot|>"}, {"single_word", false}, {"lstrip", false},
                           {"rstrip", false}, {"normalized", false}, {"special", true}}}},
        {"normalizer", normalizer}, {"pre_tokenizer", pre_tokenizer}, {"post_processor", post_processor},
        {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
        {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"fuse_unk", false},
                   {"byte_fallback", false}, {"ignore_merges", false}, {"vocab", vocab}, {"merges", parsed_merges}}}}
        .dump();
  };
  const nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                                     {"use_regex", true}};
  const nlohmann::json split = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
         {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  const nlohmann::json template_processing = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", "<|eot|>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair", {{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens", {{"<|eot|>", {{"id", "<|eot|>"}, {"ids", {id}}, {"tokens", {"<|eot|>"}}}}}}};
  const std::string text = "hello world<|eot|> Hello, w\u00f6rld 123\n";
  const std::pair<const char*, std::string> seeds[] = {
      {"gpt2", tokenizer(byte_level, nullptr, nullptr)},
      {"llama3", tokenizer(split, nullptr, template_processing)},
      {"nfc", tokenizer(byte_level, {{"type", "NFC"}}, byte_level)},
  };
  for (const auto& [name, json] : seeds) {
    require_accepted(name, [&, name = name, &json = json] {
      const Tokenizer t = Tokenizer::from_json(json, name);
      t.decode(t.encode(text));
    });
    write_file(dir / name, json + std::string(1, '\0') + text);
  }
}

}  // namespace
}  // namespace lorafast::fuzz

int main(int argc, char** argv) {
  using namespace lorafast;
  using namespace lorafast::fuzz;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  const fs::path scratch = out / "scratch";
  fs::create_directories(scratch);
  const GptWeights<float> weights = init_gpt_weights<float>(tiny_model(), 1);
  TensorMap named;
  for (const auto& [name, tensor] : gpt_named_tensors(weights)) named.emplace(name, *tensor);
  const std::string weights_file = as_string(serialize_safetensors(named));
  write_safetensors_seeds(out / "safetensors", weights_file);
  write_model_seeds(out / "gpt_model", weights_file);
  write_adapter_seeds(out / "peft_adapter", scratch);
  write_checkpoint_seeds(out / "checkpoint", scratch);
  write_cost_model_seeds(out / "cost_model", scratch);
  write_token_seeds(out / "token_ids");
  write_chat_template_seeds(out / "chat_template");
  write_instruction_data_seeds(out / "instruction_data");
  write_tokenizer_seeds(out / "tokenizer");
  fs::remove_all(scratch);
  return 0;
}

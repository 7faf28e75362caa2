// Reading instruction data (instruction_data.hpp): JSON lines streamed with a cap on
// a line's length, each line checked and read as one example of its file's format.
#include <algorithm>
#include <exception>
#include <optional>
#include <fstream>

#include "core/json_read.hpp"
#include "lorafast/error.hpp"
#include "lorafast/instruction_data.hpp"

namespace lorafast {

namespace {

using ojson = nlohmann::ordered_json;
constexpr auto bad = ErrorKind::bad_input;

std::string kind(const ojson& value) {
  if (value.is_object()) return "an object";
  if (value.is_array()) return "a list";
  return describe(nlohmann::json(value));  // a scalar: cheap to copy
}

const std::string& string_field(const ojson& object, const char* key, const std::string& where) {
  const auto it = object.find(key);
  LF_CHECK(it != object.end(), bad, where, " has no '", key, "'");
  LF_CHECK(it->is_string(), bad, where, ": '", key, "' must be a string, got ", kind(*it));
  return it->get_ref<const std::string&>();
}

// ShareGPT speakers as FastChat, Axolotl and LLaMA-Factory name them; TRL's
// maybe_convert_to_chatml keeps `from` as the role, which equals this whenever the
// data already uses role names.
std::string sharegpt_role(const std::string& from) {
  if (from == "human") return "user";
  if (from == "gpt") return "assistant";
  return from;
}

// A non-empty list of messages, each an object with a string role (ShareGPT: from)
// and a content that is a string, a list of parts or null (ShareGPT: a string value).
ojson read_messages(const ojson& value, const std::string& origin, const char* key, bool sharegpt) {
  LF_CHECK(value.is_array() && !value.empty(), bad, origin, ": '", key, "' must be a non-empty list of messages, got ",
           kind(value));
  ojson messages = ojson::array();
  for (std::size_t i = 0; i < value.size(); ++i) {
    const ojson& m = value[i];
    const std::string where = cat(origin, ": '", key, "'[", i, "]");
    LF_CHECK(m.is_object(), bad, where, " must be an object, got ", kind(m));
    if (!sharegpt) {
      string_field(m, "role", where);
      const auto content = m.find("content");
      LF_CHECK(content == m.end() || content->is_string() || content->is_array() || content->is_null(), bad, where,
               ": 'content' must be a string, a list or null, got ", kind(*content));
      messages.push_back(m);
      continue;
    }
    // TRL's order: the other keys, then role and content.
    ojson message = ojson::object();
    for (const auto& [k, v] : m.items())
      if (k != "from" && k != "value") message[k] = v;
    message["role"] = sharegpt_role(string_field(m, "from", where));
    message["content"] = string_field(m, "value", where);
    messages.push_back(std::move(message));
  }
  return messages;
}

// TRL json.loads a string "tools"; a list is used as it is.
ojson read_tools(const ojson& doc, const std::string& origin) {
  const auto it = doc.find("tools");
  if (it == doc.end() || it->is_null()) return nullptr;
  ojson tools = it->is_string() ? parse_ordered_json(it->get_ref<const std::string&>(), origin + ": 'tools'") : *it;
  LF_CHECK(tools.is_array(), bad, origin, ": 'tools' must be a list (or its JSON text), got ", kind(tools));
  return tools;
}

// TRL passes "chat_template_kwargs" to apply_chat_template, whose own parameters (and
// the variables it sets) they cannot name.
ojson read_template_kwargs(const ojson& doc, const std::string& origin) {
  const auto it = doc.find("chat_template_kwargs");
  if (it == doc.end() || it->is_null()) return nullptr;
  LF_CHECK(it->is_object(), bad, origin, ": 'chat_template_kwargs' must be an object, got ", kind(*it));
  static const char* const taken[] = {"conversation", "messages", "tools", "documents", "chat_template",
                                      "add_generation_prompt", "continue_final_message", "tokenize", "padding",
                                      "truncation", "max_length", "return_tensors", "return_dict",
                                      "return_assistant_tokens_mask", "tokenizer_kwargs"};
  for (const char* key : taken)
    LF_CHECK(!it->contains(key), bad, origin, ": 'chat_template_kwargs' cannot set '", key, "'");
  return *it;
}

InstructionExample parse_example(std::string_view text, const std::string& origin) {
  ojson doc = parse_ordered_json(text, origin);
  LF_CHECK(doc.is_object(), bad, origin, ": an example must be a JSON object, got ", kind(doc));
  const bool has_text = doc.contains("text"), has_prompt = doc.contains("prompt") || doc.contains("completion"),
             has_messages = doc.contains("messages"), has_conversations = doc.contains("conversations");
  const int formats = has_text + has_prompt + has_messages + has_conversations;
  LF_CHECK(formats > 0, bad, origin, ": no 'text', 'prompt' and 'completion', 'messages' or 'conversations'");
  LF_CHECK(formats == 1, bad, origin,
           ": the keys of more than one format ('text', 'prompt'/'completion', 'messages', 'conversations')");
  InstructionExample ex;
  ex.origin = origin;
  if (has_text) {
    ex.format = InstructionFormat::text;
    string_field(doc, "text", origin);
    ex.input = std::move(doc["text"]);
  } else if (has_prompt) {
    LF_CHECK(doc.contains("prompt") && doc.contains("completion"), bad, origin, ": '",
             doc.contains("prompt") ? "prompt" : "completion", "' without '",
             doc.contains("prompt") ? "completion" : "prompt", "'");
    const ojson &prompt = doc["prompt"], &completion = doc["completion"];
    if (prompt.is_string()) {
      ex.format = InstructionFormat::prompt_completion;
      string_field(doc, "completion", origin + ": a text prompt (then the completion is text too)");
      ex.input = prompt;
      ex.completion = completion;
    } else {
      ex.format = InstructionFormat::conversational_prompt_completion;
      LF_CHECK(prompt.is_array(), bad, origin, ": 'prompt' must be a string or a list of messages, got ", kind(prompt));
      ex.input = read_messages(prompt, origin, "prompt", false);
      ex.completion = read_messages(completion, origin, "completion", false);
    }
  } else {
    ex.format = has_messages ? InstructionFormat::messages : InstructionFormat::sharegpt;
    ex.input = read_messages(doc[has_messages ? "messages" : "conversations"], origin,
                             has_messages ? "messages" : "conversations", !has_messages);
  }
  if (ex.conversational()) {
    ex.tools = read_tools(doc, origin);
    ex.template_kwargs = read_template_kwargs(doc, origin);
  }
  return ex;
}

// Calls `each` with every line of `path` (without its '\n') and its number; a line
// longer than max_line_bytes is refused as soon as it is.
template <class Each>
void read_lines(const std::filesystem::path& path, std::size_t max_line_bytes, Each&& each) {
  std::ifstream in(path, std::ios::binary);
  LF_CHECK(in.is_open(), bad, path.string(), ": cannot open for reading");
  std::vector<char> buffer(1 << 16);
  std::string line;
  std::size_t number = 1;
  while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
    std::string_view chunk(buffer.data(), static_cast<std::size_t>(in.gcount()));
    while (!chunk.empty()) {
      const std::size_t newline = chunk.find('\n');
      const std::string_view part = chunk.substr(0, newline);
      LF_CHECK(part.size() <= max_line_bytes - line.size(), bad, path.string(), ":", number, ": a line longer than ",
               max_line_bytes, " bytes");
      line.append(part);
      if (newline == std::string_view::npos) break;
      each(std::string_view(line), number++);
      line.clear();
      chunk.remove_prefix(newline + 1);
    }
  }
  LF_CHECK(!in.bad(), bad, path.string(), ":", number, ": read error");
  if (!line.empty()) each(std::string_view(line), number);
}

// Lines are parsed this many (or this many bytes) at a time, in parallel, then
// handed on in file order, so the first bad line in the file is the one reported.
constexpr std::size_t batch_lines = 1024, batch_bytes = 64u << 20;

void read_file(const std::filesystem::path& path, const std::function<void(InstructionExample&&)>& each,
               std::size_t max_line_bytes) {
  InstructionFileReader reader(path.string());
  bool any = false;
  std::vector<std::string> lines;
  std::vector<std::size_t> numbers;
  std::size_t bytes = 0;
  std::vector<std::optional<InstructionExample>> parsed;
  std::vector<std::exception_ptr> failed;
  const auto flush = [&] {
    parsed.assign(lines.size(), std::nullopt);
    failed.assign(lines.size(), nullptr);
#pragma omp parallel for schedule(dynamic, 16)
    for (std::size_t i = 0; i < lines.size(); ++i) try {
        parsed[i] = InstructionFileReader::parse(lines[i], path.string(), numbers[i]);
      } catch (...) {
        failed[i] = std::current_exception();
      }
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (failed[i]) std::rethrow_exception(failed[i]);
      if (!parsed[i]) continue;
      any = true;
      each(reader.accept(std::move(*parsed[i]), numbers[i]));
    }
    lines.clear(), numbers.clear(), bytes = 0;
  };
  try {
    read_lines(path, max_line_bytes, [&](std::string_view text, std::size_t number) {
      lines.emplace_back(text);
      numbers.push_back(number);
      bytes += text.size();
      if (lines.size() == batch_lines || bytes >= batch_bytes) flush();
    });
  } catch (const Error&) {
    flush();  // a bad line before the one that stopped the reading is the first error
    throw;
  }
  flush();
  LF_CHECK(any, bad, path.string(), ": no examples");
}

}  // namespace

const char* format_name(InstructionFormat format) {
  switch (format) {
    case InstructionFormat::text: return "text";
    case InstructionFormat::prompt_completion: return "prompt-completion";
    case InstructionFormat::conversational_prompt_completion: return "conversational prompt-completion";
    case InstructionFormat::messages: return "messages";
    case InstructionFormat::sharegpt: return "ShareGPT conversations";
  }
  LF_ASSERT(false);
}

bool InstructionExample::conversational() const {
  return format != InstructionFormat::text && format != InstructionFormat::prompt_completion;
}

bool InstructionExample::prompt_completion() const {
  return format == InstructionFormat::prompt_completion || format == InstructionFormat::conversational_prompt_completion;
}

std::optional<InstructionExample> InstructionFileReader::parse(std::string_view text, const std::string& file,
                                                               std::size_t line) {
  if (text.find_first_not_of(" \t\r") == std::string_view::npos) return std::nullopt;
  return parse_example(text, cat(file, ":", line));
}

std::optional<InstructionExample> InstructionFileReader::read_line(std::string_view text, std::size_t line) {
  auto ex = parse(text, file_, line);
  if (!ex) return std::nullopt;
  return accept(std::move(*ex), line);
}

InstructionExample InstructionFileReader::accept(InstructionExample&& ex, std::size_t line) {
  if (!format_) format_ = ex.format, format_line_ = line;
  LF_CHECK(ex.format == *format_, bad, ex.origin, ": a ", format_name(ex.format), " example, but line ", format_line_,
           " is ", format_name(*format_), " (one format per file)");
  return std::move(ex);
}

std::size_t for_each_instruction_example(const std::filesystem::path& path,
                                         const std::function<void(InstructionExample&&)>& each,
                                         std::size_t max_line_bytes) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  LF_CHECK(std::filesystem::exists(status), bad, path.string(), ": cannot open: no such file or directory");
  if (!std::filesystem::is_directory(status)) {
    read_file(path, each, max_line_bytes);
    return 1;
  }
  std::vector<std::filesystem::path> files;
  for (std::filesystem::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".jsonl" && !it->is_directory(ec)) files.push_back(it->path());
  LF_CHECK(!ec, bad, path.string(), ": cannot list the directory: ", ec.message());
  LF_CHECK(!files.empty(), bad, path.string(), ": no .jsonl files in the directory");
  std::sort(files.begin(), files.end());
  for (const auto& file : files) read_file(file, each, max_line_bytes);
  return files.size();
}

}  // namespace lorafast

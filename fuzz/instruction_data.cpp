// Fuzz harness: a JSONL file of instruction data, read line by line as
// for_each_instruction_example reads a file (format detected on the first example,
// others refused), each conversational example rendered with a ChatML template:
// every line is accepted or throws Error(bad_input) naming the input and line.
#include "harness.hpp"
#include "lorafast/chat_template.hpp"
#include "lorafast/instruction_data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lorafast;
  static const ChatTemplate chatml = ChatTemplate::parse(
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}{{ tools | tojson }}",
      "chatml");
  std::string_view file(reinterpret_cast<const char*>(data), size);
  return fuzz::run_reader([&] {
    InstructionFileReader reader(fuzz::origin);
    for (std::size_t line = 1; !file.empty(); ++line) {
      const std::size_t newline = file.find('\n');
      const auto ex = reader.read_line(file.substr(0, newline), line);
      file.remove_prefix(newline == std::string_view::npos ? file.size() : newline + 1);
      if (!ex || !ex->conversational()) continue;
      const nlohmann::ordered_json config = {{"eos_token", "<|im_end|>"}};
      chatml.render(chat_variables(ex->input, ex->tools, nullptr, ex->prompt_completion(), config, ex->origin));
    }
  });
}

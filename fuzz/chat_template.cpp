// Fuzz harness: a chat template and a conversation, the bytes before the first NUL
// and after it. The template is parsed, the conversation read, and the template
// rendered with small limits: each step accepts its input or throws
// Error(bad_input) naming it; nothing else (a crash, a hang past the limits, a
// leak) is allowed.
#include "harness.hpp"
#include "lorafast/chat_template.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lorafast;
  const auto [source, conversation] = fuzz::split_at_nul(data, size);
  ChatTemplateLimits limits;
  limits.max_output_bytes = 1 << 20;
  limits.max_loop_iterations = 100'000;
  return fuzz::run_reader([&] {
    const ChatTemplate chat_template = ChatTemplate::parse(source, fuzz::origin, limits);
    const nlohmann::ordered_json config = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};
    chat_template.render(conversation_variables(conversation, fuzz::origin, config, true));
  });
}

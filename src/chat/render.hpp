// A parsed template and its renderer.
#pragma once

#include <string>

#include "chat/ast.hpp"
#include "lorafast/chat_template.hpp"

namespace lorafast::chat {

struct Program {
  std::string origin;
  Body body;
  ChatTemplateLimits limits;
  bool marks_generation = false;
};

// TemplateError (with the line) when the template fails.
RenderedChat render(const Program& program, const nlohmann::ordered_json& variables);

}  // namespace lorafast::chat

// The parsed template: expressions and statements of the Jinja2 subset chat
// templates use, each with the line it starts on.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/value.hpp"

namespace lorafast::chat {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
  literal,   // value
  name,      // name
  list,      // args
  tuple,     // args
  dict,      // kwargs (keys are expressions in args, values in args: k0, v0, k1, v1...)
  attr,      // args[0].name
  item,      // args[0][args[1]]
  slice,     // args[0][args[1]:args[2]:args[3]] (null where omitted)
  call,      // args[0](args[1..], kwargs)
  filter,    // args[0] | name(args[1..], kwargs)
  test,      // args[0] is [not] name(args[1..])
  negate,    // -args[0]
  plus,      // +args[0]
  not_,      // not args[0]
  and_,      // args[0] and args[1]
  or_,       // args[0] or args[1]
  binary,    // args[0] name args[1]: + - * / // % ** ~
  compare,   // args[0] ops[0] args[1] ops[1] args[2] ...: == != < <= > >= in notin
  condition  // args[1] if args[0] else args[2] (args[2] null when omitted)
};

struct Expr {
  Expr(ExprKind kind, int line) : kind(kind), line(line) {}
  ExprKind kind;
  int line;
  Value value;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negated = false;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class StmtKind {
  text,        // text
  output,      // {{ expr }}
  if_,         // branches (condition, body) ..., else_body
  for_,        // for targets in expr [if filter] body [else else_body]
  set,         // set targets = expr
  set_attr,    // set targets[0].targets[1] = expr
  set_block,   // set targets[0] %} body {% endset
  macro,       // macro name(params) body
  break_,
  continue_,
  generation,  // generation %} body {% endgeneration
};

struct Stmt {
  Stmt(StmtKind kind, int line) : kind(kind), line(line) {}
  StmtKind kind;
  int line;
  std::string text;
  ExprPtr expr, filter;
  std::vector<std::string> targets;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body, else_body;
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro parameters and defaults (null: none)
};

// Parses the tokens of lexer.hpp; TemplateError (with the line) on a syntax error
// or a construct outside the supported subset (an unknown tag, filter or test).
Body parse(std::string_view source);

}  // namespace lorafast::chat

// Jinja2's parser (jinja2/parser.py) for the statements and expressions of chat
// templates, with the same precedence: condition < or < and < not < comparisons <
// + - < ~ < * / // % < ** < unary - + < postfix (. [] ()) and filters / tests.
#include "chat/ast.hpp"
#include "chat/builtins.hpp"
#include "chat/lexer.hpp"

namespace lorafast::chat {
namespace {

constexpr int max_nesting = 200;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Body parse_template() {
    Body body = parse_body({});
    return body;
  }

 private:
  const Token& cur() const { return t_[i_]; }
  const Token& peek(std::size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  [[noreturn]] void fail(const std::string& message) const { throw TemplateError(message, cur().line); }
  bool is_op(const char* o) const { return cur().kind == TokenKind::op && cur().text == o; }
  bool is_name(const char* n) const { return cur().kind == TokenKind::name && cur().text == n; }
  bool skip_op(const char* o) {
    if (!is_op(o)) return false;
    ++i_;
    return true;
  }
  bool skip_name(const char* n) {
    if (!is_name(n)) return false;
    ++i_;
    return true;
  }
  std::string describe_current() const {
    switch (cur().kind) {
      case TokenKind::end: return "the end of the template";
      case TokenKind::block_end: return "the end of the tag";
      case TokenKind::variable_end: return "the end of the expression";
      case TokenKind::name:
      case TokenKind::op: return "'" + cur().text + "'";
      case TokenKind::string: return "a string";
      default: return "a number";
    }
  }
  void expect_op(const char* o) {
    if (!skip_op(o)) fail(std::string("expected '") + o + "', got " + describe_current());
  }
  std::string expect_name() {
    if (cur().kind != TokenKind::name) fail("expected a name, got " + describe_current());
    return t_[i_++].text;
  }
  void expect_block_end() {
    if (cur().kind != TokenKind::block_end) fail("expected the end of the tag, got " + describe_current());
    ++i_;
  }

  struct Depth {
    explicit Depth(Parser& p) : p(p) {
      if (++p.depth_ > max_nesting) p.fail("the template nests deeper than 200 levels");
    }
    ~Depth() { --p.depth_; }
    Parser& p;
  };

  // Statements until a block tag whose name is in `ends` (left unconsumed, after its
  // {%), or the end of the template when `ends` is empty.
  Body parse_body(const std::vector<std::string>& ends) {
    Depth depth(*this);
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.kind == TokenKind::end) {
        if (!ends.empty()) fail("missing {% " + ends.back() + " %}: the template ended first");
        return body;
      }
      if (t.kind == TokenKind::text) {
        auto s = std::make_unique<Stmt>(StmtKind::text, t.line);
        s->text = t.text;
        body.push_back(std::move(s));
        ++i_;
      } else if (t.kind == TokenKind::variable_begin) {
        ++i_;
        auto s = std::make_unique<Stmt>(StmtKind::output, t.line);
        s->expr = parse_tuple();
        if (cur().kind != TokenKind::variable_end) fail("expected the end of the expression }}, got " + describe_current());
        ++i_;
        body.push_back(std::move(s));
      } else {
        ++i_;  // {%
        if (cur().kind != TokenKind::name) fail("expected a tag name, got " + describe_current());
        const std::string& tag = cur().text;
        for (const std::string& end : ends)
          if (tag == end) return body;
        body.push_back(parse_statement());
      }
    }
  }

  StmtPtr parse_statement() {
    const int line = cur().line;
    const std::string tag = t_[i_++].text;
    auto s = std::make_unique<Stmt>(StmtKind::text, line);
    if (tag == "if") {
      s->kind = StmtKind::if_;
      while (true) {
        ExprPtr condition = parse_tuple(false);
        expect_block_end();
        Body body = parse_body({"elif", "else", "endif"});
        s->branches.emplace_back(std::move(condition), std::move(body));
        const std::string next = t_[i_++].text;
        if (next == "elif") continue;
        if (next == "else") {
          expect_block_end();
          s->else_body = parse_body({"endif"});
          ++i_;
        }
        break;
      }
    } else if (tag == "for") {
      s->kind = StmtKind::for_;
      parse_targets(s->targets);
      if (!skip_name("in")) fail("expected 'in' in the for tag, got " + describe_current());
      s->expr = parse_tuple(false);
      if (skip_name("if")) s->filter = parse_expression(true);
      if (is_name("recursive")) fail("recursive for loops are not supported");
      expect_block_end();
      s->body = parse_body({"endfor", "else"});
      if (t_[i_++].text == "else") {
        expect_block_end();
        s->else_body = parse_body({"endfor"});
        ++i_;
      }
    } else if (tag == "set") {
      if (cur().kind == TokenKind::name && peek().kind == TokenKind::op && peek().text == ".") {
        s->kind = StmtKind::set_attr;
        s->targets.push_back(expect_name());
        ++i_;
        s->targets.push_back(expect_name());
        expect_op("=");
        s->expr = parse_tuple();
      } else {
        parse_targets(s->targets);
        if (skip_op("=")) {
          s->kind = StmtKind::set;
          s->expr = parse_tuple();
        } else {
          if (s->targets.size() != 1) fail("a {% set %} block assigns one name");
          if (is_op("|")) fail("filters on {% set %} blocks are not supported");
          s->kind = StmtKind::set_block;
          expect_block_end();
          s->body = parse_body({"endset"});
          ++i_;
        }
      }
    } else if (tag == "macro") {
      s->kind = StmtKind::macro;
      s->text = expect_name();
      expect_op("(");
      while (!skip_op(")")) {
        if (!s->params.empty()) expect_op(",");
        if (skip_op(")")) break;
        std::string name = expect_name();
        ExprPtr fallback;
        if (skip_op("=")) fallback = parse_expression(true);
        s->params.emplace_back(std::move(name), std::move(fallback));
      }
      expect_block_end();
      s->body = parse_body({"endmacro"});
      ++i_;
      if (cur().kind == TokenKind::name && cur().text == s->text) ++i_;
    } else if (tag == "break" || tag == "continue") {
      s->kind = tag == "break" ? StmtKind::break_ : StmtKind::continue_;
    } else if (tag == "generation") {
      s->kind = StmtKind::generation;
      expect_block_end();
      s->body = parse_body({"endgeneration"});
      ++i_;
    } else if (tag == "endif" || tag == "endfor" || tag == "elif" || tag == "else" || tag == "endset" ||
               tag == "endmacro" || tag == "endgeneration") {
      --i_;
      fail("unexpected {% " + tag + " %}");
    } else {
      --i_;
      fail("the tag {% " + tag + " %} is not supported");
    }
    expect_block_end();
    return s;
  }

  // name | name, name, ... | (name, name)
  void parse_targets(std::vector<std::string>& targets) {
    const bool parens = skip_op("(");
    do {
      targets.push_back(expect_name());
    } while (skip_op(","));
    if (parens) expect_op(")");
  }

  ExprPtr node(ExprKind kind, int line) { return std::make_unique<Expr>(kind, line); }

  // Expressions separated by commas (a tuple when there is a comma); Jinja parses
  // the conditions of if and for without `x if y else z`.
  ExprPtr parse_tuple(bool with_condition = true) {
    const int line = cur().line;
    std::vector<ExprPtr> items;
    bool comma = false;
    while (true) {
      if (!items.empty()) {
        if (!skip_op(",")) break;
        comma = true;
      }
      if (cur().kind == TokenKind::variable_end || cur().kind == TokenKind::block_end || is_op(")") || is_name("if"))
        break;
      items.push_back(with_condition ? parse_expression(true) : parse_or());
    }
    if (items.empty()) fail("expected an expression, got " + describe_current());
    if (!comma) return std::move(items[0]);
    auto t = node(ExprKind::tuple, line);
    t->args = std::move(items);
    return t;
  }

  ExprPtr parse_expression(bool with_condition) {
    Depth depth(*this);
    if (!with_condition) return parse_or();
    ExprPtr e = parse_or();
    while (is_name("if")) {
      const int line = cur().line;
      ++i_;
      auto c = node(ExprKind::condition, line);
      c->args.push_back(parse_or());
      c->args.push_back(std::move(e));
      c->args.push_back(skip_name("else") ? parse_expression(true) : nullptr);
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(ExprKind kind, ExprPtr left, ExprPtr right, const std::string& name = "") {
    auto b = node(kind, left->line);
    b->name = name;
    b->args.push_back(std::move(left));
    b->args.push_back(std::move(right));
    return b;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (skip_name("or")) e = binary(ExprKind::or_, std::move(e), parse_and());
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (skip_name("and")) e = binary(ExprKind::and_, std::move(e), parse_not());
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      Depth depth(*this);
      auto n = node(ExprKind::not_, cur().line);
      ++i_;
      n->args.push_back(parse_not());
      return n;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr first = parse_math1();
    ExprPtr c;
    while (true) {
      std::string op;
      if (cur().kind == TokenKind::op &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == "<=" || cur().text == ">" ||
           cur().text == ">=")) {
        op = t_[i_++].text;
      } else if (skip_name("in")) {
        op = "in";
      } else if (is_name("not") && peek().kind == TokenKind::name && peek().text == "in") {
        i_ += 2;
        op = "notin";
      } else {
        break;
      }
      if (!c) {
        c = node(ExprKind::compare, first->line);
        c->args.push_back(std::move(first));
      }
      c->ops.push_back(op);
      c->args.push_back(parse_math1());
    }
    return c ? std::move(c) : std::move(first);
  }
  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const std::string op = t_[i_++].text;
      e = binary(ExprKind::binary, std::move(e), parse_concat(), op);
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (skip_op("~")) e = binary(ExprKind::binary, std::move(e), parse_math2(), "~");
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string op = t_[i_++].text;
      e = binary(ExprKind::binary, std::move(e), parse_pow(), op);
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (skip_op("**")) e = binary(ExprKind::binary, std::move(e), parse_unary(true), "**");
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    Depth depth(*this);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      e = node(is_op("-") ? ExprKind::negate : ExprKind::plus, cur().line);
      ++i_;
      e->args.push_back(parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    Depth depth(*this);
    const Token& t = cur();
    const int line = t.line;
    if (t.kind == TokenKind::name) {
      auto e = node(ExprKind::literal, line);
      if (t.text == "true" || t.text == "True") e->value = Value(true);
      else if (t.text == "false" || t.text == "False") e->value = Value(false);
      else if (t.text == "none" || t.text == "None") e->value = Value(nullptr);
      else e->kind = ExprKind::name, e->name = t.text;
      ++i_;
      return e;
    }
    if (t.kind == TokenKind::string) {
      std::string s;
      while (cur().kind == TokenKind::string) s += t_[i_++].text;
      auto e = node(ExprKind::literal, line);
      e->value = Value(std::move(s));
      return e;
    }
    if (t.kind == TokenKind::integer || t.kind == TokenKind::floating) {
      auto e = node(ExprKind::literal, line);
      e->value = t.kind == TokenKind::integer ? Value(t.integer) : Value(t.floating);
      ++i_;
      return e;
    }
    if (skip_op("(")) {
      if (skip_op(")")) return node(ExprKind::tuple, line);
      ExprPtr e = parse_tuple();
      expect_op(")");
      return e;
    }
    if (skip_op("[")) {
      auto e = node(ExprKind::list, line);
      while (!skip_op("]")) {
        if (!e->args.empty()) expect_op(",");
        if (skip_op("]")) break;
        e->args.push_back(parse_expression(true));
      }
      return e;
    }
    if (skip_op("{")) {
      auto e = node(ExprKind::dict, line);
      while (!skip_op("}")) {
        if (!e->args.empty()) expect_op(",");
        if (skip_op("}")) break;
        e->args.push_back(parse_expression(true));
        expect_op(":");
        e->args.push_back(parse_expression(true));
      }
      return e;
    }
    fail("unexpected " + describe_current());
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".") || is_op("[")) e = parse_subscript(std::move(e));
      else if (is_op("(")) e = parse_call(std::move(e));
      else return e;
    }
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) e = parse_filter(std::move(e));
      else if (is_name("is")) e = parse_test(std::move(e));
      else if (is_op("(")) e = parse_call(std::move(e));
      else return e;
    }
  }

  ExprPtr parse_subscript(ExprPtr e) {
    Depth depth(*this);
    const int line = cur().line;
    if (skip_op(".")) {
      if (cur().kind == TokenKind::name) {
        auto a = node(ExprKind::attr, line);
        a->name = t_[i_++].text;
        a->args.push_back(std::move(e));
        return a;
      }
      if (cur().kind != TokenKind::integer) fail("expected a name after '.', got " + describe_current());
      auto i = node(ExprKind::item, line);
      i->args.push_back(std::move(e));
      auto k = node(ExprKind::literal, line);
      k->value = Value(t_[i_++].integer);
      i->args.push_back(std::move(k));
      return i;
    }
    expect_op("[");
    ExprPtr parts[3];
    int colons = 0;
    while (!is_op("]")) {
      if (skip_op(":")) {
        if (++colons > 2) fail("a slice has at most two ':'");
        continue;
      }
      if (parts[colons]) fail("expected ']' or ':', got " + describe_current());
      parts[colons] = parse_expression(true);
      if (colons == 0 && is_op(",")) fail("tuple indices are not supported");
    }
    ++i_;
    if (colons == 0) {
      if (!parts[0]) fail("empty subscript []");
      auto i = node(ExprKind::item, line);
      i->args.push_back(std::move(e));
      i->args.push_back(std::move(parts[0]));
      return i;
    }
    auto s = node(ExprKind::slice, line);
    s->args.push_back(std::move(e));
    for (auto& p : parts) s->args.push_back(std::move(p));
    return s;
  }

  void parse_call_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!skip_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (skip_op(")")) break;
      if (is_op("*") || is_op("**")) fail("*args and **kwargs in calls are not supported");
      if (cur().kind == TokenKind::name && peek().kind == TokenKind::op && peek().text == "=") {
        std::string key = t_[i_].text;
        i_ += 2;
        e.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!e.kwargs.empty()) fail("a positional argument follows a keyword argument");
        e.args.push_back(parse_expression(true));
      }
    }
  }

  ExprPtr parse_call(ExprPtr callee) {
    Depth depth(*this);
    auto c = node(ExprKind::call, cur().line);
    c->args.push_back(std::move(callee));
    parse_call_args(*c);
    return c;
  }

  std::string dotted_name() {
    std::string name = expect_name();
    while (skip_op(".")) {
      name += '.';
      name += expect_name();
    }
    return name;
  }

  ExprPtr parse_filter(ExprPtr value) {
    Depth depth(*this);
    const int line = cur().line;
    expect_op("|");
    auto f = node(ExprKind::filter, line);
    f->name = dotted_name();
    if (!has_filter(f->name)) throw TemplateError("the filter '" + f->name + "' is not supported", line);
    f->args.push_back(std::move(value));
    if (is_op("(")) parse_call_args(*f);
    return f;
  }

  ExprPtr parse_test(ExprPtr value) {
    Depth depth(*this);
    const int line = cur().line;
    ++i_;  // is
    auto t = node(ExprKind::test, line);
    t->negated = skip_name("not");
    t->name = dotted_name();
    if (!has_test(t->name)) throw TemplateError("the test '" + t->name + "' is not supported", line);
    t->args.push_back(std::move(value));
    if (is_op("(")) {
      parse_call_args(*t);
    } else if ((cur().kind == TokenKind::name || cur().kind == TokenKind::string || cur().kind == TokenKind::integer ||
                cur().kind == TokenKind::floating || is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail("tests cannot be chained with 'is'");
      t->args.push_back(parse_postfix(parse_primary()));
    }
    return t;
  }

  std::vector<Token> t_;
  std::size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace

Body parse(std::string_view source) { return Parser(lex(source)).parse_template(); }

}  // namespace lorafast::chat

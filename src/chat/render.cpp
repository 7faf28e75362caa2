// The evaluator: runs a parsed template over its variables as Jinja2 runs the
// compiled template (scopes: a for loop, a macro call and a generation block each
// open one; if does not), with Python's operators, and records the text of
// {% generation %} blocks as transformers' AssistantTracker does.
#include "chat/render.hpp"

#include <cmath>
#include <unordered_map>

#include "chat/builtins.hpp"

namespace lorafast::chat {
namespace {

struct Scope {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Scope> parent;
};
using ScopePtr = std::shared_ptr<Scope>;

enum class Flow { normal, break_, continue_ };

std::string operands(const char* op, const Value& a, const Value& b) {
  return std::string("unsupported operand type(s) for ") + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'";
}

class Renderer {
 public:
  Renderer(const Program& program)
      : p_(program), budget_{program.limits.max_output_bytes, program.limits.max_loop_iterations,
               16 * static_cast<std::uint64_t>(program.limits.max_output_bytes), {}} {}

  RenderedChat run(const nlohmann::ordered_json& variables) {
    auto base = std::make_shared<Scope>();
    for (const char* name : {"range", "namespace", "dict", "raise_exception", "strftime_now"})
      base->vars[name] = global(name, budget_);
    auto top = std::make_shared<Scope>(Scope{{}, base});
    struct EmptyNamespaces {  // before the scopes holding them are freed
      ~EmptyNamespaces() {
        for (const auto& ns : budget.namespaces) ns->entries.clear();
      }
      Budget& budget;
    } empty_namespaces{budget_};
    for (const auto& [k, v] : variables.items()) top->vars[k] = from_json(v);
    out_ = &result_.text;
    if (exec(p_.body, top) != Flow::normal) throw TemplateError("break or continue outside a loop", 1);
    return std::move(result_);
  }

 private:
  void emit(std::string_view s) {
    if (out_->size() + s.size() + (out_ == &result_.text ? 0 : result_.text.size()) > budget_.max_string_bytes)
      throw TemplateError("the output exceeds the template's size limit");
    out_->append(s);
  }

  Flow exec(const Body& body, const ScopePtr& scope) {
    for (const StmtPtr& s : body) {
      const Flow f = exec(*s, scope);
      if (f != Flow::normal) return f;
    }
    return Flow::normal;
  }

  static Value lookup(const ScopePtr& scope, const std::string& name) {
    for (const Scope* s = scope.get(); s != nullptr; s = s->parent.get()) {
      auto it = s->vars.find(name);
      if (it != s->vars.end()) return it->second;
    }
    return Undefined{name};
  }

  static void assign(const ScopePtr& scope, const std::vector<std::string>& targets, Value value) {
    if (targets.size() == 1) {
      scope->vars[targets[0]] = std::move(value);
      return;
    }
    if (!value.is_array()) throw TemplateError("cannot unpack a " + type_name(value) + " into " +
                                               std::to_string(targets.size()) + " names");
    const Array& items = value.array();
    if (items.size() != targets.size())
      throw TemplateError("cannot unpack " + std::to_string(items.size()) + " values into " +
                          std::to_string(targets.size()) + " names");
    for (std::size_t i = 0; i < targets.size(); ++i) scope->vars[targets[i]] = items[i];
  }

  std::string capture(const Body& body, const ScopePtr& scope, const char* what) {
    std::string buffer;
    std::string* saved = out_;
    out_ = &buffer;
    const Flow f = exec(body, scope);
    out_ = saved;
    if (f != Flow::normal) throw TemplateError(std::string("break or continue inside ") + what);
    return buffer;
  }

  Flow exec(const Stmt& s, const ScopePtr& scope) {
    try {
      return exec_statement(s, scope);
    } catch (const TemplateError& e) {
      if (e.line != 0) throw;
      throw TemplateError(e.what(), s.line);
    }
  }

  Flow exec_statement(const Stmt& s, const ScopePtr& scope) {
    switch (s.kind) {
      case StmtKind::text: emit(s.text); return Flow::normal;
      case StmtKind::output: emit(to_str(eval(*s.expr, scope))); return Flow::normal;
      case StmtKind::if_:
        for (const auto& [condition, body] : s.branches)
          if (truthy(eval(*condition, scope))) return exec(body, scope);
        return exec(s.else_body, scope);
      case StmtKind::for_: return exec_for(s, scope);
      case StmtKind::set: assign(scope, s.targets, eval(*s.expr, scope)); return Flow::normal;
      case StmtKind::set_attr: {
        const Value target = lookup(scope, s.targets[0]);
        if (!target.is_namespace()) throw TemplateError("cannot assign attribute on non-namespace object");
        if (!s.targets[1].empty() && s.targets[1][0] == '_')
          throw TemplateError("namespace attributes cannot start with an underscore");
        target.object().set(s.targets[1], eval(*s.expr, scope));
        return Flow::normal;
      }
      case StmtKind::set_block: {
        auto inner = std::make_shared<Scope>(Scope{{}, scope});
        scope->vars[s.targets[0]] = Value(capture(s.body, inner, "a set block"));
        return Flow::normal;
      }
      case StmtKind::macro: scope->vars[s.text] = make_macro(s, scope); return Flow::normal;
      case StmtKind::break_: return Flow::break_;
      case StmtKind::continue_: return Flow::continue_;
      case StmtKind::generation: {
        auto inner = std::make_shared<Scope>(Scope{{}, scope});
        const std::string body = capture(s.body, inner, "a generation block");
        const std::size_t start = result_.text.size();
        result_.generation.emplace_back(start, start + body.size());
        emit(body);
        return Flow::normal;
      }
    }
    return Flow::normal;
  }

  Flow exec_for(const Stmt& s, const ScopePtr& scope) {
    std::vector<Value> items = iterate(eval(*s.expr, scope), budget_);
    auto inner = std::make_shared<Scope>(Scope{{}, scope});
    if (s.filter) {
      std::vector<Value> kept;
      for (Value& item : items) {
        assign(inner, s.targets, item);
        if (truthy(eval(*s.filter, inner))) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) return exec(s.else_body, inner);
    const auto n = static_cast<std::int64_t>(items.size());
    for (std::int64_t i = 0; i < n; ++i) {
      assign(inner, s.targets, items[static_cast<std::size_t>(i)]);
      auto loop = std::make_shared<Object>();
      loop->entries = {{"index0", Value(i)},
                       {"index", Value(i + 1)},
                       {"revindex", Value(n - i)},
                       {"revindex0", Value(n - i - 1)},
                       {"first", Value(i == 0)},
                       {"last", Value(i == n - 1)},
                       {"length", Value(n)},
                       {"depth", Value(1)},
                       {"depth0", Value(0)},
                       {"previtem", i > 0 ? items[static_cast<std::size_t>(i - 1)] : Value(Undefined{"loop.previtem"})},
                       {"nextitem", i + 1 < n ? items[static_cast<std::size_t>(i + 1)] : Value(Undefined{"loop.nextitem"})}};
      inner->vars["loop"] = Value(std::move(loop));
      if (exec(s.body, inner) == Flow::break_) break;
    }
    return Flow::normal;
  }

  Value make_macro(const Stmt& s, const ScopePtr& scope) {
    auto c = std::make_shared<Callable>();
    c->name = s.text;
    std::weak_ptr<Scope> defined_in = scope;
    c->call = [this, &s, defined_in](Arguments& args) -> Value {
      ScopePtr parent = defined_in.lock();
      if (!parent) throw TemplateError("macro '" + s.text + "' called after its scope ended");
      if (args.positional.size() > s.params.size())
        throw TemplateError("macro '" + s.text + "' takes not more than " + std::to_string(s.params.size()) +
                            " argument(s)");
      if (depth_ >= p_.limits.max_call_depth) throw TemplateError("macro calls nest deeper than the limit");
      auto local = std::make_shared<Scope>(Scope{{}, parent});
      for (std::size_t i = 0; i < s.params.size(); ++i) {
        const std::string& name = s.params[i].first;
        const Value* given = argument(args, i, name);
        if (given != nullptr) local->vars[name] = *given;
        else if (s.params[i].second) local->vars[name] = eval(*s.params[i].second, local);
        else local->vars[name] = Undefined{name};
      }
      for (const auto& [k, v] : args.named) {
        bool known = false;
        for (const auto& param : s.params) known = known || param.first == k;
        if (!known) throw TemplateError("macro '" + s.text + "' takes no keyword argument '" + k + "'");
      }
      ++depth_;
      std::string text;
      try {
        text = capture(s.body, local, "a macro");
      } catch (...) {
        --depth_;
        throw;
      }
      --depth_;
      return Value(std::move(text));
    };
    return Value(std::move(c));
  }

  Value eval(const Expr& e, const ScopePtr& scope) {
    try {
      return eval_expression(e, scope);
    } catch (const TemplateError& error) {
      if (error.line != 0) throw;
      throw TemplateError(error.what(), e.line);
    }
  }

  Arguments eval_arguments(const Expr& e, const ScopePtr& scope, std::size_t first) {
    Arguments args;
    for (std::size_t i = first; i < e.args.size(); ++i) args.positional.push_back(eval(*e.args[i], scope));
    for (const auto& [k, v] : e.kwargs) args.named.emplace_back(k, eval(*v, scope));
    return args;
  }

  Value eval_expression(const Expr& e, const ScopePtr& scope) {
    switch (e.kind) {
      case ExprKind::literal: return e.value;
      case ExprKind::name: return lookup(scope, e.name);
      case ExprKind::list:
      case ExprKind::tuple: {
        Array a;
        for (const ExprPtr& item : e.args) a.push_back(eval(*item, scope));
        budget_.iterations(a.size());
        return e.kind == ExprKind::tuple ? make_tuple(std::move(a)) : Value(std::move(a));
      }
      case ExprKind::dict: {
        auto o = std::make_shared<Object>();
        for (std::size_t i = 0; i + 1 < e.args.size(); i += 2) {
          const Value key = eval(*e.args[i], scope);
          if (!key.is_string()) throw TemplateError("dict keys must be strings");
          o->set(key.str(), eval(*e.args[i + 1], scope));
        }
        return Value(std::move(o));
      }
      case ExprKind::attr: return get_attr(eval(*e.args[0], scope), e.name, budget_);
      case ExprKind::item: return get_item(eval(*e.args[0], scope), eval(*e.args[1], scope), budget_);
      case ExprKind::slice: {
        const auto part = [&](int i) { return e.args[i] ? eval(*e.args[i], scope) : Value(nullptr); };
        const Value object = eval(*e.args[0], scope);
        return slice(object, part(1), part(2), part(3));
      }
      case ExprKind::call: {
        const Value callee = eval(*e.args[0], scope);
        Arguments args = eval_arguments(e, scope, 1);
        if (callee.is_undefined()) throw TemplateError("'" + std::get<Undefined>(callee.v).name + "' is undefined");
        if (!callee.is_callable()) throw TemplateError("'" + type_name(callee) + "' object is not callable");
        return charged(callee.callable().call(args));
      }
      case ExprKind::filter: {
        const Value value = eval(*e.args[0], scope);
        Arguments args = eval_arguments(e, scope, 1);
        return charged(apply_filter(e.name, value, args, budget_));
      }
      case ExprKind::test: {
        const Value value = eval(*e.args[0], scope);
        Arguments args = eval_arguments(e, scope, 1);
        return Value(apply_test(e.name, value, args) != e.negated);
      }
      case ExprKind::negate:
      case ExprKind::plus: {
        const Value v = eval(*e.args[0], scope);
        if (!v.is_number()) throw TemplateError("bad operand type for unary " + std::string(e.kind == ExprKind::negate ? "-" : "+") + ": '" + type_name(v) + "'");
        if (e.kind == ExprKind::plus) return v.is_bool() ? Value(v.integer()) : v;
        if (v.is_float()) return Value(-v.number());
        if (v.integer() == INT64_MIN) throw TemplateError("integer overflow");
        return Value(-v.integer());
      }
      case ExprKind::not_: return Value(!truthy(eval(*e.args[0], scope)));
      case ExprKind::and_: {
        Value a = eval(*e.args[0], scope);
        return truthy(a) ? eval(*e.args[1], scope) : a;
      }
      case ExprKind::or_: {
        Value a = eval(*e.args[0], scope);
        return truthy(a) ? a : eval(*e.args[1], scope);
      }
      case ExprKind::binary: return binary(e.name, eval(*e.args[0], scope), eval(*e.args[1], scope));
      case ExprKind::compare: {
        Value left = eval(*e.args[0], scope);
        for (std::size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.args[i + 1], scope);
          const std::string& op = e.ops[i];
          bool ok;
          if (op == "==") ok = equal(left, right);
          else if (op == "!=") ok = !equal(left, right);
          else if (op == "<") ok = less(left, right);
          else if (op == ">") ok = less(right, left);
          else if (op == "<=") ok = less(left, right) || equal(left, right);
          else if (op == ">=") ok = less(right, left) || equal(left, right);
          else {
            if (right.is_string()) budget_.text_work(right.str().size());
            ok = contains(right, left) == (op == "in");
          }
          if (!ok) return Value(false);
          left = std::move(right);
        }
        return Value(true);
      }
      case ExprKind::condition:
        if (truthy(eval(*e.args[0], scope))) return eval(*e.args[1], scope);
        return e.args[2] ? eval(*e.args[2], scope) : Value(Undefined{"the condition's else"});
    }
    return Value();
  }

  // A call's or filter's result charged to the budget: the text it built (a
  // string, or the strings of a list) and a list's items.
  Value charged(Value v) {
    if (v.is_string()) {
      budget_.text_work(v.str().size());
    } else if (v.is_array()) {
      budget_.iterations(v.array().size());
      std::uint64_t bytes = 0;
      for (const Value& item : v.array())
        if (item.is_string()) bytes += item.str().size();
      budget_.text_work(bytes);
    }
    return v;
  }

  Value binary(const std::string& op, const Value& a, const Value& b) {
    if (op == "~") {
      if (a.is_string() && b.is_string()) {
        budget_.string(a.str().size() + b.str().size());
        return Value(a.str() + b.str());
      }
      std::string s = to_str(a);
      const std::string t = to_str(b);
      budget_.string(s.size() + t.size());
      return Value(std::move(s += t));
    }
    if (a.is_undefined() || b.is_undefined())
      throw TemplateError("'" + std::get<Undefined>((a.is_undefined() ? a : b).v).name + "' is undefined");
    const bool ints = (a.is_int() || a.is_bool()) && (b.is_int() || b.is_bool());
    const bool numbers = a.is_number() && b.is_number();
    std::int64_t r = 0;
    if (op == "+") {
      if (ints) {
        if (__builtin_add_overflow(a.integer(), b.integer(), &r)) throw TemplateError("integer overflow");
        return Value(r);
      }
      if (numbers) return Value(a.number() + b.number());
      if (a.is_string() && b.is_string()) {
        budget_.string(a.str().size() + b.str().size());
        return Value(a.str() + b.str());
      }
      if (a.is_array() && b.is_array()) {
        budget_.iterations(a.array().size() + b.array().size());
        Array out = a.array();
        out.insert(out.end(), b.array().begin(), b.array().end());
        return Value(std::move(out));
      }
      throw TemplateError(operands("+", a, b));
    }
    if (op == "-") {
      if (ints) {
        if (__builtin_sub_overflow(a.integer(), b.integer(), &r)) throw TemplateError("integer overflow");
        return Value(r);
      }
      if (numbers) return Value(a.number() - b.number());
      throw TemplateError(operands("-", a, b));
    }
    if (op == "*") {
      if (ints) {
        if (__builtin_mul_overflow(a.integer(), b.integer(), &r)) throw TemplateError("integer overflow");
        return Value(r);
      }
      if (numbers) return Value(a.number() * b.number());
      const Value& seq = (a.is_int() || a.is_bool()) ? b : a;
      const Value& count = (a.is_int() || a.is_bool()) ? a : b;
      if ((count.is_int() || count.is_bool()) && (seq.is_string() || seq.is_array())) {
        const std::int64_t n = std::max<std::int64_t>(0, count.integer());
        if (seq.is_string()) {
          if (seq.str().empty() || n == 0) return Value(std::string());
          if (static_cast<std::uint64_t>(n) > budget_.max_string_bytes / seq.str().size())
            throw TemplateError("a string exceeds the template's size limit");
          budget_.string(static_cast<std::size_t>(n) * seq.str().size());
          std::string out;
          for (std::int64_t i = 0; i < n; ++i) out += seq.str();
          return Value(std::move(out));
        }
        if (seq.array().empty() || n == 0) return Value(Array{});
        if (static_cast<std::uint64_t>(n) > budget_.iterations_left / seq.array().size())
          throw TemplateError("the template exceeds its limit of loop iterations");
        budget_.iterations(static_cast<std::uint64_t>(n) * seq.array().size());
        Array out;
        for (std::int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.array().begin(), seq.array().end());
        return Value(std::move(out));
      }
      throw TemplateError(operands("*", a, b));
    }
    if (!numbers) throw TemplateError(operands(op.c_str(), a, b));
    if (op == "/") {
      if (b.number() == 0) throw TemplateError("division by zero");
      return Value(a.number() / b.number());
    }
    if (op == "//" || op == "%") {
      if (b.number() == 0) throw TemplateError("integer division or modulo by zero");
      if (ints) {
        const std::int64_t x = a.integer(), y = b.integer();
        if (x == INT64_MIN && y == -1) throw TemplateError("integer overflow");
        std::int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) --q, m += y;
        return Value(op == "//" ? q : m);
      }
      const double x = a.number(), y = b.number();
      const double m = std::fmod(x, y);
      const double mod = (m != 0 && ((m < 0) != (y < 0))) ? m + y : m;
      return Value(op == "//" ? std::floor((x - mod) / y + 0.5) : mod);
    }
    if (op == "**") {
      if (ints && b.integer() >= 0) {
        const std::int64_t base = a.integer(), exponent = b.integer();
        if (base == 0 || base == 1) return Value(exponent == 0 ? std::int64_t{1} : base);
        if (base == -1) return Value(exponent % 2 == 0 ? std::int64_t{1} : std::int64_t{-1});
        std::int64_t result = 1;
        for (std::int64_t i = 0; i < b.integer(); ++i)
          if (__builtin_mul_overflow(result, a.integer(), &result)) throw TemplateError("integer overflow");
        return Value(result);
      }
      return Value(std::pow(a.number(), b.number()));
    }
    throw TemplateError("unknown operator " + op);
  }

  const Program& p_;
  Budget budget_;
  RenderedChat result_;
  std::string* out_ = nullptr;
  int depth_ = 0;
};

}  // namespace

RenderedChat render(const Program& program, const nlohmann::ordered_json& variables) {
  return Renderer(program).run(variables);
}

}  // namespace lorafast::chat

// Jinja2's filters and tests that chat templates use, with Jinja's semantics
// (jinja2/filters.py, jinja2/tests.py) and transformers' tojson.
#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cmath>

#include "chat/builtins.hpp"
#include "chat/py_string.hpp"

namespace lorafast::chat {
namespace {

const char* const filters[] = {"trim", "tojson", "length", "count", "string", "upper", "lower", "capitalize", "title",
                               "replace", "join", "first", "last", "default", "d", "items", "list", "safe",
                               "selectattr", "rejectattr", "select", "reject", "map", "dictsort", "int", "float",
                               "abs", "reverse", "unique", "sort"};
const char* const tests[] = {"defined", "undefined", "none", "string", "mapping", "iterable", "sequence", "number",
                             "integer", "float", "boolean", "true", "false", "callable", "eq", "equalto", "==",
                             "ne", "!=", "lt", "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=",
                             "in", "odd", "even", "divisibleby", "lower", "upper", "sameas"};

Arguments rest_of(const Arguments& args, std::size_t from) {
  Arguments out;
  for (std::size_t i = from; i < args.positional.size(); ++i) out.positional.push_back(args.positional[i]);
  out.named = args.named;
  return out;
}

// Jinja's make_attrgetter: "a.b.0" looks up a, then b, then item 0.
Value attribute_path(const Value& item, const std::string& path, Budget& budget) {
  Value v = item;
  std::size_t pos = 0;
  while (true) {
    const std::size_t dot = path.find('.', pos);
    const std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    std::int64_t index = 0;
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), index);
    const bool digits = !part.empty() && part[0] != '-' && ec == std::errc() && end == part.data() + part.size();
    v = digits ? get_item(v, Value(index), budget) : get_item(v, Value(part), budget);
    if (dot == std::string::npos) return v;
    pos = dot + 1;
  }
}

const std::string& name_arg(const Value* v, const char* what) {
  if (v == nullptr || !v->is_string()) throw TemplateError(std::string(what) + " must be a string");
  return v->str();
}

Value select(const Value& seq, Arguments& args, Budget& budget, bool by_attribute, bool keep) {
  const std::size_t first = by_attribute ? 1 : 0;
  const std::string attribute = by_attribute ? name_arg(argument(args, 0, ""), "selectattr attribute") : "";
  Array out;
  for (const Value& item : iterate(seq, budget)) {
    const Value v = by_attribute ? attribute_path(item, attribute, budget) : item;
    bool ok;
    if (args.positional.size() <= first) {
      ok = truthy(v);
    } else {
      const std::string& test = name_arg(&args.positional[first], "test name");
      if (!has_test(test)) throw TemplateError("the test '" + test + "' is not supported");
      Arguments rest = rest_of(args, first + 1);
      ok = apply_test(test, v, rest);
    }
    if (ok == keep) out.push_back(item);
  }
  return Value(std::move(out));
}

Value length(const Value& v) {
  if (v.is_undefined()) return Value(std::int64_t{0});
  if (v.is_string()) return Value(static_cast<std::int64_t>(py::length(v.str())));
  if (v.is_array()) return Value(static_cast<std::int64_t>(v.array().size()));
  if (v.is_object()) return Value(static_cast<std::int64_t>(v.object().entries.size()));
  throw TemplateError("object of type '" + type_name(v) + "' has no len()");
}

Value dictsort(const Value& value, Arguments& args) {
  check_arguments(args, "dictsort", 3, {"case_sensitive", "by", "reverse"});
  if (!value.is_object()) throw TemplateError("dictsort: a dict is required, got " + type_name(value));
  const Value* cs = argument(args, 0, "case_sensitive");
  const Value* by = argument(args, 1, "by");
  const Value* rev = argument(args, 2, "reverse");
  const bool case_sensitive = cs != nullptr && truthy(*cs), reverse = rev != nullptr && truthy(*rev);
  const bool by_value = by != nullptr && by->is_string() && by->str() == "value";
  if (by != nullptr && !(by->is_string() && (by->str() == "key" || by->str() == "value")))
    throw TemplateError("dictsort: 'by' must be 'key' or 'value'");
  Array items;
  for (const auto& [k, v] : value.object().entries) items.push_back(make_tuple(Array{Value(k), v}));
  const auto key = [&](const Value& item) {
    const Value& v = item.array()[by_value ? 1 : 0];
    return v.is_string() && !case_sensitive ? Value(py::lower(v.str())) : v;
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    return reverse ? less(key(b), key(a)) : less(key(a), key(b));
  });
  return Value(std::move(items));
}

JsonStyle json_style(Arguments& args) {
  check_arguments(args, "tojson", 4, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonStyle style;
  if (const Value* a = argument(args, 0, "ensure_ascii")) style.ensure_ascii = truthy(*a);
  if (const Value* indent = argument(args, 1, "indent"); indent != nullptr && !indent->is_none()) {
    if (!indent->is_int() || indent->integer() < 0 || indent->integer() > 64)
      throw TemplateError("tojson: indent must be an integer in [0, 64] or None");
    style.indent = static_cast<int>(indent->integer());
    style.item_separator = ",";
  }
  if (const Value* s = argument(args, 2, "separators"); s != nullptr && !s->is_none()) {
    if (!s->is_array() || s->array().size() != 2 || !s->array()[0].is_string() || !s->array()[1].is_string())
      throw TemplateError("tojson: separators must be a pair of strings");
    style.item_separator = s->array()[0].str();
    style.key_separator = s->array()[1].str();
  }
  if (const Value* k = argument(args, 3, "sort_keys")) style.sort_keys = truthy(*k);
  return style;
}

}  // namespace

bool has_filter(std::string_view name) {
  return std::any_of(std::begin(filters), std::end(filters), [&](const char* f) { return name == f; });
}

bool has_test(std::string_view name) {
  return std::any_of(std::begin(tests), std::end(tests), [&](const char* t) { return name == t; });
}

Value apply_filter(const std::string& name, const Value& value, Arguments& args, Budget& budget) {
  const auto no_args = [&] { check_arguments(args, name, 0, {}); };
  if (name == "trim") {
    check_arguments(args, name, 1, {"chars"});
    const Value* chars = argument(args, 0, "chars");
    std::optional<std::string> set;
    if (chars != nullptr && !chars->is_none()) set = name_arg(chars, "trim chars");
    return Value(py::strip(to_str(value), set, true, true));
  }
  if (name == "tojson") {
    JsonStyle style = json_style(args);
    style.max_bytes = budget.max_string_bytes;
    std::string out = to_json(value, style);
    budget.check(out.size());
    return Value(std::move(out));
  }
  if (name == "length" || name == "count") return no_args(), length(value);
  if (name == "string" || name == "safe") return no_args(), Value(to_str(value));
  if (name == "upper") return no_args(), Value(py::upper(to_str(value)));
  if (name == "lower") return no_args(), Value(py::lower(to_str(value)));
  if (name == "capitalize") return no_args(), Value(py::capitalize(to_str(value)));
  if (name == "title") return no_args(), Value(py::title(to_str(value)));
  if (name == "replace") {
    check_arguments(args, name, 3, {"old", "new", "count"});
    const Value* old = argument(args, 0, "old");
    const Value* with = argument(args, 1, "new");
    const Value* count = argument(args, 2, "count");
    if (old == nullptr || with == nullptr) throw TemplateError("replace() takes old and new");
    if (count != nullptr && !count->is_none() && !count->is_int()) throw TemplateError("replace: count must be an integer");
    return Value(py::replace(to_str(value), to_str(*old), to_str(*with),
                             count == nullptr || count->is_none() ? -1 : count->integer(), budget.max_string_bytes));
  }
  if (name == "join") {
    check_arguments(args, name, 2, {"d", "attribute"});
    const Value* sep = argument(args, 0, "d");
    const Value* attribute = argument(args, 1, "attribute");
    const std::string separator = sep == nullptr ? "" : to_str(*sep);
    std::string out;
    bool first = true;
    for (const Value& item : iterate(value, budget)) {
      if (!first) out += separator;
      first = false;
      out += to_str(attribute != nullptr && !attribute->is_none()
                        ? attribute_path(item, name_arg(attribute, "join attribute"), budget)
                        : item);
      budget.check(out.size());
    }
    budget.text_work(out.size());
    return Value(std::move(out));
  }
  if (name == "first" || name == "last") {
    no_args();
    std::vector<Value> items = iterate(value, budget);
    if (items.empty()) return Undefined{"no " + name + " item"};
    return name == "first" ? items.front() : items.back();
  }
  if (name == "default" || name == "d") {
    check_arguments(args, name, 2, {"default_value", "boolean"});
    const Value* fallback = argument(args, 0, "default_value");
    const Value* boolean = argument(args, 1, "boolean");
    const bool use = value.is_undefined() || (boolean != nullptr && truthy(*boolean) && !truthy(value));
    return use ? (fallback != nullptr ? *fallback : Value(std::string())) : value;
  }
  if (name == "items") {
    no_args();
    if (value.is_undefined()) return Value(Array{});
    if (!value.is_object()) throw TemplateError("items: can only get item pairs from a mapping");
    Array out;
    for (const auto& [k, v] : value.object().entries) out.push_back(make_tuple(Array{Value(k), v}));
    return Value(std::move(out));
  }
  if (name == "list") return no_args(), Value(iterate(value, budget));
  if (name == "selectattr" || name == "rejectattr") return select(value, args, budget, true, name == "selectattr");
  if (name == "select" || name == "reject") return select(value, args, budget, false, name == "select");
  if (name == "map") {
    Array out;
    const Value* attribute = nullptr;
    for (const auto& [k, v] : args.named)
      if (k == "attribute") attribute = &v;
    if (attribute != nullptr) {
      check_arguments(args, name, 0, {"attribute", "default"});
      const std::string& path = name_arg(attribute, "map attribute");
      const Value* fallback = argument(args, 99, "default");
      for (const Value& item : iterate(value, budget)) {
        Value v = attribute_path(item, path, budget);
        out.push_back(v.is_undefined() && fallback != nullptr ? *fallback : v);
      }
      return Value(std::move(out));
    }
    const std::string& filter = name_arg(argument(args, 0, ""), "map filter name");
    if (!has_filter(filter)) throw TemplateError("the filter '" + filter + "' is not supported");
    for (const Value& item : iterate(value, budget)) {
      Arguments rest = rest_of(args, 1);
      out.push_back(apply_filter(filter, item, rest, budget));
    }
    return Value(std::move(out));
  }
  if (name == "dictsort") return dictsort(value, args);
  if (name == "int" || name == "float") {
    check_arguments(args, name, 1, {"default"});
    const Value* fallback = argument(args, 0, "default");
    const auto truncated = [&](double d) -> Value {
      if (!(std::fabs(d) < 9.2e18)) return fallback != nullptr ? *fallback : Value(std::int64_t{0});
      return Value(static_cast<std::int64_t>(d));
    };
    if (value.is_number()) return name == "int" ? (value.is_float() ? truncated(value.number()) : Value(value.integer()))
                                                : Value(value.number());
    if (value.is_string()) {
      const std::string s = py::strip(value.str(), std::nullopt, true, true);
      char* end = nullptr;
      if (name == "int") {  // Jinja: int(s), else int(float(s))
        errno = 0;
        const long long i = std::strtoll(s.c_str(), &end, 10);
        if (!s.empty() && *end == '\0' && errno == 0) return Value(static_cast<std::int64_t>(i));
        const double d = std::strtod(s.c_str(), &end);
        if (!s.empty() && *end == '\0') return truncated(d);
      } else {
        const double d = std::strtod(s.c_str(), &end);
        if (!s.empty() && *end == '\0') return Value(d);
      }
    }
    if (fallback != nullptr) return *fallback;
    return name == "int" ? Value(std::int64_t{0}) : Value(0.0);
  }
  if (name == "abs") {
    no_args();
    if (value.is_float()) return Value(std::fabs(value.number()));
    if (value.is_number()) {
      if (value.integer() == INT64_MIN) throw TemplateError("integer overflow");
      return Value(value.integer() < 0 ? -value.integer() : value.integer());
    }
    throw TemplateError("bad operand type for abs(): '" + type_name(value) + "'");
  }
  if (name == "reverse") {
    no_args();
    if (value.is_string()) {
      std::vector<char32_t> cps = py::code_points(value.str());
      std::reverse(cps.begin(), cps.end());
      return Value(py::from_code_points(cps, 0, cps.size()));
    }
    std::vector<Value> items = iterate(value, budget);
    std::reverse(items.begin(), items.end());
    return Value(std::move(items));
  }
  if (name == "unique" || name == "sort") {
    check_arguments(args, name, name == "sort" ? 3 : 2,
                    name == "sort" ? std::initializer_list<std::string_view>{"reverse", "case_sensitive", "attribute"}
                                   : std::initializer_list<std::string_view>{"case_sensitive", "attribute"});
    const bool sort = name == "sort";
    const Value* reverse = sort ? argument(args, 0, "reverse") : nullptr;
    const Value* cs = argument(args, sort ? 1 : 0, "case_sensitive");
    const Value* attribute = argument(args, sort ? 2 : 1, "attribute");
    const bool case_sensitive = cs != nullptr && truthy(*cs);
    const auto key = [&](const Value& item) {
      Value v = attribute != nullptr && !attribute->is_none() ? attribute_path(item, name_arg(attribute, "attribute"), budget) : item;
      return v.is_string() && !case_sensitive ? Value(py::lower(v.str())) : v;
    };
    std::vector<Value> items = iterate(value, budget);
    Array out;
    if (sort) {
      out = items;
      const bool rev = reverse != nullptr && truthy(*reverse);
      std::stable_sort(out.begin(), out.end(), [&](const Value& a, const Value& b) {
        return rev ? less(key(b), key(a)) : less(key(a), key(b));
      });
    } else {
      std::vector<Value> seen;
      for (const Value& item : items) {
        const Value k = key(item);
        if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equal(s, k); }))
          seen.push_back(k), out.push_back(item);
      }
    }
    return Value(std::move(out));
  }
  throw TemplateError("the filter '" + name + "' is not supported");
}

bool apply_test(const std::string& name, const Value& value, Arguments& args) {
  const auto other = [&]() -> const Value& {
    if (args.positional.size() != 1 || !args.named.empty()) throw TemplateError("the test '" + name + "' takes one argument");
    return args.positional[0];
  };
  if (name != "eq" && name != "equalto" && name != "==" && name != "ne" && name != "!=" && name != "lt" &&
      name != "lessthan" && name != "<" && name != "le" && name != "<=" && name != "gt" && name != "greaterthan" &&
      name != ">" && name != "ge" && name != ">=" && name != "in" && name != "divisibleby" && name != "sameas")
    check_arguments(args, name, 0, {});
  if (name == "defined") return !value.is_undefined();
  if (name == "undefined") return value.is_undefined();
  if (name == "none") return value.is_none();
  if (name == "string") return value.is_string();
  if (name == "mapping") return value.is_object();
  if (name == "iterable") return value.is_undefined() || value.is_string() || value.is_array() || value.is_object();
  if (name == "sequence") return value.is_undefined() || value.is_string() || value.is_array() || value.is_object();
  if (name == "number") return value.is_number();
  if (name == "integer") return value.is_int();
  if (name == "float") return value.is_float();
  if (name == "boolean") return value.is_bool();
  if (name == "true") return value.is_bool() && value.boolean();
  if (name == "false") return value.is_bool() && !value.boolean();
  if (name == "callable") return value.is_callable() || value.is_undefined();  // Jinja's Undefined has __call__
  if (name == "eq" || name == "equalto" || name == "==") return equal(value, other());
  if (name == "ne" || name == "!=") return !equal(value, other());
  if (name == "lt" || name == "lessthan" || name == "<") return less(value, other());
  if (name == "le" || name == "<=") return !less(other(), value);
  if (name == "gt" || name == "greaterthan" || name == ">") return less(other(), value);
  if (name == "ge" || name == ">=") return !less(value, other());
  if (name == "in") return contains(other(), value);
  if (name == "sameas") {
    const Value& o = other();
    if (value.is_none() || value.is_bool() || value.is_undefined()) return value.v.index() == o.v.index() && equal(value, o);
    return equal(value, o) && value.v.index() == o.v.index() && !value.is_string() && !value.is_number();
  }
  if (name == "odd" || name == "even" || name == "divisibleby") {
    if (!value.is_int() && !value.is_bool()) throw TemplateError("the test '" + name + "' needs an integer");
    if (name == "divisibleby") {
      const Value& d = other();
      if (!d.is_int() || d.integer() == 0) throw TemplateError("divisibleby needs a non-zero integer");
      return value.integer() % d.integer() == 0;
    }
    return (value.integer() % 2 != 0) == (name == "odd");
  }
  if (name == "lower" || name == "upper") {
    const std::string s = to_str(value);
    return name == "lower" ? py::lower(s) == s : py::upper(s) == s;
  }
  throw TemplateError("the test '" + name + "' is not supported");
}

}  // namespace lorafast::chat

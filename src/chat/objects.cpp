// Attributes, subscripts, slices, iteration, methods and globals of template values,
// as Jinja2's sandboxed environment resolves them on Python's types.
#include <chrono>
#include <ctime>

#include "chat/builtins.hpp"
#include "chat/py_string.hpp"
#include "text/utf8.hpp"

namespace lorafast::chat {

const Value* argument(const Arguments& args, std::size_t index, std::string_view name) {
  if (index < args.positional.size()) return &args.positional[index];
  for (const auto& [k, v] : args.named)
    if (k == name) return &v;
  return nullptr;
}

void check_arguments(const Arguments& args, const std::string& function, std::size_t max_positional,
                     std::initializer_list<std::string_view> names) {
  if (args.positional.size() > max_positional)
    throw TemplateError(function + "() takes at most " + std::to_string(max_positional) + " arguments (" +
                        std::to_string(args.positional.size()) + " given)");
  std::size_t position = 0;
  for (const auto& [k, v] : args.named) {
    std::size_t index = 0;
    bool known = false;
    for (std::string_view n : names) {
      if (n == k) {
        known = true;
        if (index < args.positional.size()) throw TemplateError(function + "() got multiple values for '" + k + "'");
      }
      ++index;
    }
    if (!known) throw TemplateError(function + "() got an unexpected keyword argument '" + k + "'");
    ++position;
  }
}

namespace {

const std::string& string_arg(const Value* v, const std::string& what) {
  if (v == nullptr || !v->is_string()) throw TemplateError(what + " must be a string");
  return v->str();
}

std::optional<std::string> optional_string(const Value* v, const std::string& what) {
  if (v == nullptr || v->is_none()) return std::nullopt;
  return string_arg(v, what);
}

std::int64_t int_arg(const Value* v, std::int64_t fallback, const std::string& what) {
  if (v == nullptr || v->is_none()) return fallback;
  if (!v->is_int() && !v->is_bool()) throw TemplateError(what + " must be an integer");
  return v->integer();
}

Value method(const Value& self, const std::string& name, std::function<Value(const Value&, Arguments&)> body) {
  auto c = std::make_shared<Callable>();
  c->name = name;
  c->call = [self, body = std::move(body)](Arguments& args) { return body(self, args); };
  return Value(std::move(c));
}

Value string_list(std::vector<std::string> parts) {
  Array a;
  a.reserve(parts.size());
  for (std::string& p : parts) a.emplace_back(std::move(p));
  return Value(std::move(a));
}

bool affix(const std::string& s, const Value& which, bool start) {
  const auto one = [&](const std::string& p) {
    if (p.size() > s.size()) return false;
    return start ? s.compare(0, p.size(), p) == 0 : s.compare(s.size() - p.size(), p.size(), p) == 0;
  };
  if (which.is_string()) return one(which.str());
  if (which.is_array()) {
    for (const Value& p : which.array())
      if (one(string_arg(&p, "startswith/endswith prefix"))) return true;
    return false;
  }
  throw TemplateError(std::string(start ? "startswith" : "endswith") + " takes a string or a tuple of strings");
}

Value string_method(const Value& self, const std::string& name, Budget& budget) {
  using F = std::function<Value(const Value&, Arguments&)>;
  const auto m = [&](F f) { return method(self, name, std::move(f)); };
  if (name == "startswith" || name == "endswith") {
    const bool start = name == "startswith";
    return m([start, name](const Value& s, Arguments& a) {
      check_arguments(a, name, 1, {});
      if (a.positional.empty()) throw TemplateError(name + "() takes a prefix");
      return Value(affix(s.str(), a.positional[0], start));
    });
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const bool left = name != "rstrip", right = name != "lstrip";
    return m([left, right, name](const Value& s, Arguments& a) {
      check_arguments(a, name, 1, {});
      return Value(py::strip(s.str(), optional_string(argument(a, 0, ""), name + " argument"), left, right));
    });
  }
  if (name == "split" || name == "rsplit") {
    const bool right = name == "rsplit";
    return m([right, name](const Value& s, Arguments& a) {
      check_arguments(a, name, 2, {"sep", "maxsplit"});
      return string_list(py::split(s.str(), optional_string(argument(a, 0, "sep"), name + " separator"),
                                   int_arg(argument(a, 1, "maxsplit"), -1, "maxsplit"), right));
    });
  }
  if (name == "upper" || name == "lower" || name == "capitalize" || name == "title") {
    return m([name](const Value& s, Arguments& a) {
      check_arguments(a, name, 0, {});
      if (name == "upper") return Value(py::upper(s.str()));
      if (name == "lower") return Value(py::lower(s.str()));
      if (name == "title") return Value(py::title(s.str()));
      return Value(py::capitalize(s.str()));
    });
  }
  if (name == "replace") {
    const std::size_t limit = budget.max_string_bytes;
    return m([limit](const Value& s, Arguments& a) {
      check_arguments(a, "replace", 3, {"old", "new", "count"});
      return Value(py::replace(s.str(), string_arg(argument(a, 0, "old"), "replace old"),
                               string_arg(argument(a, 1, "new"), "replace new"),
                               int_arg(argument(a, 2, "count"), -1, "count"), limit));
    });
  }
  if (name == "find" || name == "rfind" || name == "count") {
    return m([name](const Value& s, Arguments& a) {
      check_arguments(a, name, 1, {});
      const std::string& sub = string_arg(argument(a, 0, ""), name + " argument");
      return Value(name == "count" ? py::count(s.str(), sub) : py::find(s.str(), sub, name == "rfind"));
    });
  }
  if (name == "isspace" || name == "isdigit" || name == "isalpha" || name == "isupper" || name == "islower") {
    return m([name](const Value& s, Arguments& a) {
      check_arguments(a, name, 0, {});
      const std::string& t = s.str();
      if (t.empty()) return Value(false);
      if (name == "isupper") return Value(py::upper(t) == t && py::lower(t) != t);
      if (name == "islower") return Value(py::lower(t) == t && py::upper(t) != t);
      for (char32_t c : py::code_points(t)) {
        const bool ok = name == "isspace"   ? py::is_space(c)
                        : name == "isdigit" ? (c >= '0' && c <= '9')
                                            : (c < 0x80 && std::isalpha(static_cast<int>(c)));
        if (!ok) return Value(false);
      }
      return Value(true);
    });
  }
  return Undefined{name};
}

Value dict_method(const Value& self, const std::string& name) {
  if (name == "get") {
    return method(self, name, [](const Value& d, Arguments& a) {
      check_arguments(a, "get", 2, {});
      if (a.positional.empty()) throw TemplateError("get() takes a key");
      const Value* found = a.positional[0].is_string() ? d.object().find(a.positional[0].str()) : nullptr;
      if (found != nullptr) return *found;
      return a.positional.size() > 1 ? a.positional[1] : Value(nullptr);
    });
  }
  if (name == "items" || name == "keys" || name == "values") {
    return method(self, name, [name](const Value& d, Arguments& a) {
      check_arguments(a, name, 0, {});
      Array out;
      for (const auto& [k, v] : d.object().entries) {
        if (name == "items") out.push_back(make_tuple(Array{Value(k), v}));
        else if (name == "keys") out.emplace_back(k);
        else out.push_back(v);
      }
      return Value(std::move(out));
    });
  }
  return Undefined{name};
}

}  // namespace

Value get_attr(const Value& object, const std::string& name, Budget& budget) {
  if (object.is_undefined())
    throw TemplateError("'" + std::get<Undefined>(object.v).name + "' is undefined");
  if (object.is_namespace()) {
    const Value* v = object.object().find(name);
    return v != nullptr ? *v : Value(Undefined{name});
  }
  if (object.is_object()) {
    Value m = dict_method(object, name);
    if (!m.is_undefined()) return m;
    const Value* v = object.object().find(name);
    return v != nullptr ? *v : Value(Undefined{name});
  }
  if (object.is_string()) return string_method(object, name, budget);
  return Undefined{name};
}

namespace {

// "[key]", naming a missing item (built by appends: GCC 12 warns, wrongly, on the
// chained operator+ here).
std::string index_name(const Value& key) {
  std::string name = "[";
  name += to_str(key);
  name += ']';
  return name;
}

std::int64_t normalized_index(std::int64_t i, std::size_t size) { return i < 0 ? i + static_cast<std::int64_t>(size) : i; }
}  // namespace

Value get_item(const Value& object, const Value& key, Budget& budget) {
  if (object.is_undefined()) throw TemplateError("'" + std::get<Undefined>(object.v).name + "' is undefined");
  if (object.is_object() || object.is_namespace()) {
    if (key.is_string())
      if (const Value* v = object.object().find(key.str())) return *v;
    if (object.is_object() && key.is_string()) return get_attr(object, key.str(), budget);
    return Undefined{key.is_string() ? key.str() : to_str(key)};
  }
  if ((object.is_array() || object.is_string()) && (key.is_int() || key.is_bool())) {
    if (object.is_array()) {
      const Array& a = object.array();
      const std::int64_t i = normalized_index(key.integer(), a.size());
      if (i >= 0 && i < static_cast<std::int64_t>(a.size())) return a[static_cast<std::size_t>(i)];
      return Undefined{index_name(key)};
    }
    const std::vector<char32_t> cps = py::code_points(object.str());
    const std::int64_t i = normalized_index(key.integer(), cps.size());
    if (i >= 0 && i < static_cast<std::int64_t>(cps.size()))
      return py::from_code_points(cps, static_cast<std::size_t>(i), static_cast<std::size_t>(i) + 1);
    return Undefined{index_name(key)};
  }
  if (key.is_string()) return get_attr(object, key.str(), budget);
  return Undefined{index_name(key)};
}

Value slice(const Value& object, const Value& start, const Value& stop, const Value& step) {
  const auto bound = [](const Value& v, const char* what) -> std::optional<std::int64_t> {
    if (v.is_undefined() || v.is_none()) return std::nullopt;
    if (!v.is_int() && !v.is_bool()) throw TemplateError(std::string("slice ") + what + " must be an integer");
    return v.integer();
  };
  const std::int64_t st = bound(step, "step").value_or(1);
  if (st == 0) throw TemplateError("slice step cannot be zero");
  std::vector<char32_t> cps;
  std::size_t n = 0;
  if (object.is_array()) n = object.array().size();
  else if (object.is_string()) cps = py::code_points(object.str()), n = cps.size();
  else throw TemplateError("cannot slice a " + type_name(object));
  const auto len = static_cast<std::int64_t>(n);
  const auto clamp = [&](std::optional<std::int64_t> v, std::int64_t fallback) {
    if (!v) return fallback;
    std::int64_t i = *v < 0 ? *v + len : *v;
    if (st > 0) return std::clamp<std::int64_t>(i, 0, len);
    return std::clamp<std::int64_t>(i, -1, len - 1);
  };
  const std::int64_t b = clamp(bound(start, "start"), st > 0 ? 0 : len - 1);
  const std::int64_t e = clamp(bound(stop, "stop"), st > 0 ? len : -1);
  std::vector<std::size_t> picks;
  const std::uint64_t stride = st > 0 ? static_cast<std::uint64_t>(st) : 0 - static_cast<std::uint64_t>(st);
  for (std::int64_t i = b; st > 0 ? i < e : i > e;) {  // |i|, |e| <= len + 1: no overflow
    picks.push_back(static_cast<std::size_t>(i));
    if (static_cast<std::uint64_t>(st > 0 ? e - i : i - e) <= stride) break;
    i += st;
  }
  if (object.is_array()) {
    Array out;
    for (std::size_t i : picks) out.push_back(object.array()[i]);
    return Value(std::move(out));
  }
  std::string out;
  for (std::size_t i : picks) text::append_utf8(out, cps[i]);
  return Value(std::move(out));
}

std::vector<Value> iterate(const Value& value, Budget& budget) {
  std::vector<Value> items;
  if (value.is_undefined()) return items;
  if (value.is_array()) {
    items = value.array();
  } else if (value.is_object()) {
    for (const auto& [k, v] : value.object().entries) items.emplace_back(k);
  } else if (value.is_string()) {
    const std::string& s = value.str();
    for (std::size_t pos = 0; pos < s.size();) {
      const std::size_t start = pos;
      text::next_code_point(s, pos);
      items.emplace_back(s.substr(start, pos - start));
    }
  } else {
    throw TemplateError("'" + type_name(value) + "' object is not iterable");
  }
  budget.iterations(items.size());
  return items;
}

bool contains(const Value& haystack, const Value& needle) {
  if (haystack.is_string()) {
    if (!needle.is_string()) throw TemplateError("'in <string>' requires a string as left operand, not " + type_name(needle));
    return haystack.str().find(needle.str()) != std::string::npos;
  }
  if (haystack.is_array()) {
    for (const Value& v : haystack.array())
      if (equal(v, needle)) return true;
    return false;
  }
  if (haystack.is_object()) return needle.is_string() && haystack.object().find(needle.str()) != nullptr;
  if (haystack.is_undefined()) return false;
  throw TemplateError("argument of type '" + type_name(haystack) + "' is not iterable");
}

bool less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.number() < b.number();
    return a.integer() < b.integer();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();  // UTF-8 byte order is code point order
  if (a.is_array() && b.is_array()) {
    const Array &x = a.array(), &y = b.array();
    for (std::size_t i = 0; i < x.size() && i < y.size(); ++i)
      if (!equal(x[i], y[i])) return less(x[i], y[i]);
    return x.size() < y.size();
  }
  throw TemplateError("'<' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) + "'");
}

namespace {

Value function(const std::string& name, std::function<Value(Arguments&)> body) {
  auto c = std::make_shared<Callable>();
  c->name = name;
  c->call = std::move(body);
  return Value(std::move(c));
}

Value keyword_object(Arguments& a, const std::string& name, bool is_namespace, Budget* budget) {
  auto o = std::make_shared<Object>();
  o->is_namespace = is_namespace;
  if (a.positional.size() > 1) throw TemplateError(name + "() takes at most one positional argument");
  if (!a.positional.empty()) {
    if (!a.positional[0].is_object()) throw TemplateError(name + "() takes a dict as its positional argument");
    o->entries = a.positional[0].object().entries;
  }
  for (auto& [k, v] : a.named) {
    if (is_namespace && !k.empty() && k[0] == '_')
      throw TemplateError("namespace attributes cannot start with an underscore");
    o->set(k, v);
  }
  if (is_namespace) budget->namespaces.push_back(o);
  return Value(std::move(o));
}

}  // namespace

Value global(const std::string& name, Budget& budget) {
  Budget* b = &budget;
  if (name == "range") {
    return function(name, [b](Arguments& a) {
      check_arguments(a, "range", 3, {});
      if (a.positional.empty()) throw TemplateError("range expected at least 1 argument");
      std::int64_t start = 0, stop = 0, step = 1;
      if (a.positional.size() == 1) stop = int_arg(&a.positional[0], 0, "range argument");
      else start = int_arg(&a.positional[0], 0, "range argument"), stop = int_arg(&a.positional[1], 0, "range argument");
      if (a.positional.size() == 3) step = int_arg(&a.positional[2], 1, "range step");
      if (step == 0) throw TemplateError("range() arg 3 must not be zero");
      // Counted in unsigned arithmetic: stop - start may exceed the int64 range.
      const bool empty = step > 0 ? stop <= start : start <= stop;
      const std::uint64_t span = step > 0 ? static_cast<std::uint64_t>(stop) - static_cast<std::uint64_t>(start)
                                          : static_cast<std::uint64_t>(start) - static_cast<std::uint64_t>(stop);
      const std::uint64_t stride = step > 0 ? static_cast<std::uint64_t>(step) : 0 - static_cast<std::uint64_t>(step);
      const std::uint64_t count = empty ? 0 : (span - 1) / stride + 1;
      if (count > 100000) throw TemplateError("range too big, maximum size for range is 100000");
      const auto n = static_cast<std::int64_t>(count);
      b->iterations(static_cast<std::uint64_t>(n));
      Array out;
      for (std::int64_t i = 0; i < n; ++i) out.emplace_back(start + i * step);
      return Value(std::move(out));
    });
  }
  if (name == "namespace") return function(name, [b](Arguments& a) { return keyword_object(a, "namespace", true, b); });
  if (name == "dict") return function(name, [b](Arguments& a) { return keyword_object(a, "dict", false, b); });
  if (name == "raise_exception") {
    return function(name, [](Arguments& a) -> Value {
      check_arguments(a, "raise_exception", 1, {"message"});
      const Value* m = argument(a, 0, "message");
      throw TemplateError("raise_exception: " + (m ? to_str(*m) : std::string()));
    });
  }
  if (name == "strftime_now") {
    return function(name, [](Arguments& a) {
      check_arguments(a, "strftime_now", 1, {"format"});
      const std::string& format = string_arg(argument(a, 0, "format"), "strftime_now format");
      const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
      std::tm local{};
      localtime_r(&now, &local);
      std::string out(256 + format.size() * 8, '\0');
      out.resize(std::strftime(out.data(), out.size(), format.c_str(), &local));
      return Value(std::move(out));
    });
  }
  return Undefined{name};
}

}  // namespace lorafast::chat

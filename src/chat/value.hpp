// The values a chat template computes with: Python's JSON-like types as Jinja sees
// them (undefined, None, bool, int, float, str, list, dict) plus namespaces and
// callables, with Python's semantics for truth, equality, str() and repr().
// Strings are UTF-8; lengths, indices and slices count code points as Python does.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace lorafast::chat {

// A template's error while it runs (a type error, raise_exception, a limit); the
// renderer adds the template's name and line.
struct TemplateError : std::runtime_error {
  explicit TemplateError(const std::string& message, int line = 0) : std::runtime_error(message), line(line) {}
  int line;  // 0 until known
};

struct Value;
using Array = std::vector<Value>;

constexpr std::uint32_t max_value_depth = 256;

// A dict (keys in insertion order, as Python's) or a namespace() (mutable attributes).
struct Object {
  std::vector<std::pair<std::string, Value>> entries;
  bool is_namespace = false;
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value value);
};

struct Arguments;
struct Callable {
  std::string name;
  std::function<Value(Arguments&)> call;
};

struct Undefined {
  std::string name;  // what was looked up, for messages
};

struct Value {
  // Strings, lists and dicts are shared: copying a value (a lookup, a loop item)
  // never copies a message's text.
  std::variant<Undefined, std::nullptr_t, bool, std::int64_t, double, std::shared_ptr<const std::string>,
               std::shared_ptr<Array>, std::shared_ptr<Object>, std::shared_ptr<Callable>>
      v;
  bool tuple = false;       // an array that Python holds as a tuple (printed in parentheses)
  std::uint32_t depth = 0;  // containers nested in this value, capped at max_value_depth

  Value() = default;
  Value(Undefined u) : v(std::move(u)) {}
  Value(std::nullptr_t) : v(nullptr) {}
  Value(bool b) : v(b) {}
  Value(std::int64_t i) : v(i) {}
  Value(int i) : v(std::int64_t{i}) {}
  Value(double d) : v(d) {}
  Value(std::string s) : v(std::make_shared<const std::string>(std::move(s))) {}
  Value(const char* s) : v(std::make_shared<const std::string>(s)) {}
  // Containers deeper than max_value_depth throw TemplateError, so that printing,
  // comparing and freeing a value never recurse without bound.
  Value(Array a);
  Value(std::shared_ptr<Object> o);
  Value(std::shared_ptr<Callable> c) : v(std::move(c)) {}

  bool is_undefined() const { return v.index() == 0; }
  bool is_none() const { return v.index() == 1; }
  bool is_bool() const { return v.index() == 2; }
  bool is_int() const { return v.index() == 3; }
  bool is_float() const { return v.index() == 4; }
  bool is_number() const { return is_bool() || is_int() || is_float(); }  // Python's numbers.Number
  bool is_string() const { return v.index() == 5; }
  bool is_array() const { return v.index() == 6; }
  bool is_object() const { return v.index() == 7 && !object().is_namespace; }
  bool is_namespace() const { return v.index() == 7 && object().is_namespace; }
  bool is_callable() const { return v.index() == 8; }

  const std::string& str() const { return *std::get<std::shared_ptr<const std::string>>(v); }
  const Array& array() const { return *std::get<std::shared_ptr<Array>>(v); }
  Object& object() const { return *std::get<std::shared_ptr<Object>>(v); }
  const Callable& callable() const { return *std::get<std::shared_ptr<Callable>>(v); }
  bool boolean() const { return std::get<bool>(v); }
  std::int64_t integer() const { return is_bool() ? std::int64_t{boolean()} : std::get<std::int64_t>(v); }
  double number() const { return is_float() ? std::get<double>(v) : static_cast<double>(integer()); }
};

// Call arguments: positional, then keyword in the order written.
struct Arguments {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> named;
};

Value make_tuple(Array items);
Value from_json(const nlohmann::ordered_json& json);

bool truthy(const Value& v);
bool equal(const Value& a, const Value& b);
// Python's type name of the value ("str", "dict", "undefined", ...).
std::string type_name(const Value& v);

// str(v) as Jinja prints it ("" for undefined, "None", "True", repr of floats, lists
// and dicts), and repr(v).
std::string to_str(const Value& v);
std::string repr(const Value& v);
std::string float_repr(double d);

// json.dumps(v, ensure_ascii=False, indent=..., separators=..., sort_keys=...);
// indent < 0 means None. TemplateError for values JSON cannot hold.
struct JsonStyle {
  int indent = -1;
  std::string item_separator = ", ", key_separator = ": ";
  bool sort_keys = false, ensure_ascii = false;
  std::size_t max_bytes = SIZE_MAX;  // TemplateError beyond
};
std::string to_json(const Value& v, const JsonStyle& style);

}  // namespace lorafast::chat

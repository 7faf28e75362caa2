// The chat-template engine (src/chat): each construct of the Jinja2 subset against
// the text transformers' apply_chat_template renders for it (the expected strings
// below were rendered by transformers 5.25 with Jinja2 3.1.6 from the same template
// and variables), whitespace control, {% generation %} spans, and errors that name
// the template's line. tests/python/test_chat_template_vs_hf.py renders TRL's templates.
#include <gtest/gtest.h>

#include <string>

#include "lorafast/chat_template.hpp"
#include "lorafast/error.hpp"

namespace lorafast {
namespace {

using ojson = nlohmann::ordered_json;

const char* const variables_json = R"lf({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Grüße 日本"}, {"role": "assistant", "content": "Hi!", "tool_calls": [{"name": "f", "arguments": {"b": 1, "a": [1.5, null, true]}}]}], "x": 7, "f": 0.5, "s": "  a,b,,c  ", "t": true, "n": null, "d": {"z": 1, "a": "é", "m": [1, 2]}})lf";

ojson variables() {
  ojson v = ojson::parse(variables_json);
  v["bos_token"] = "<s>";
  v["eos_token"] = "</s>";
  v["add_generation_prompt"] = false;
  return v;
}

std::string render(const std::string& source, const ojson& vars = variables()) {
  return ChatTemplate::parse(source, "test.jinja").render(vars).text;
}

// The message of the Error that parsing or rendering `source` throws.
std::string error_of(const std::string& source, ChatTemplateLimits limits = {}) {
  try {
    ChatTemplate::parse(source, "test.jinja", limits).render(variables());
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::bad_input);
    return e.what();
  }
  ADD_FAILURE() << "no error for " << source;
  return "";
}

struct Case {
  const char* name;
  const char* source;
  const char* expected;
};

const Case cases[] = {
    {"text_and_newlines",
     R"lf(line1
line2
line3
)lf",
     R"lf(line1
line2
line3)lf"},
    {"output_values",
     R"lf({{ n }}|{{ t }}|{{ x }}|{{ f }}|{{ 1e-5 }}|{{ 1e16 }}|{{ 2.0 }}|{{ 10/4 }}|{{ undefined_name }}|{{ d }}|{{ [1, 'a\'b', "q\""] }})lf",
     R"lf(None|True|7|0.5|1e-05|1e+16|2.0|2.5||{'z': 1, 'a': 'é', 'm': [1, 2]}|[1, "a'b", 'q"'])lf"},
    {"arithmetic",
     R"lf({{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1 - -1 }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ 'a' ~ 1 ~ none }})lf",
     R"lf(7 9 3 -4 2 1024 2 ababab [1, 2] a1None)lf"},
    {"comparisons",
     R"lf({{ 1 < 2 < 3 }} {{ 'a' in 'cat' }} {{ 'x' not in ['x'] }} {{ 'z' in d }} {{ 1 == 1.0 }} {{ [1, 2] == [1, 2] }} {{ 'b' > 'a' }} {{ 0 and 'x' }} {{ '' or 'y' }} {{ not n }})lf",
     R"lf(True True False True True True True 0 y True)lf"},
    {"conditional",
     R"lf({{ 'yes' if t else 'no' }}|{{ 'yes' if n }}|{{ 'a' if n else 'b' if x else 'c' }})lf",
     R"lf(yes||b)lf"},
    {"subscripts",
     R"lf({{ messages[0].role }} {{ messages[-1]['content'] }} {{ messages[1:] | length }} {{ messages[::-1][0].role }} {{ 'héllo'[1] }} {{ 'héllo'[1:3] }} {{ 'abc'[::-1] }} {{ d.m[1] }} {{ messages[5] is defined }})lf",
     R"lf(system Hi! 2 assistant é él cba 2 False)lf"},
    {"if_elif_else",
     R"lf({% for v in [1, 2, 3] %}{% if v == 1 %}one{% elif v == 2 %}two{% else %}other{% endif %},{% endfor %})lf",
     R"lf(one,two,other,)lf"},
    {"loop_variables",
     R"lf({% for m in messages %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }}:{{ loop.previtem.role if loop.previtem is defined }}>{{ loop.nextitem.role if loop.nextitem is defined }};{% endfor %})lf",
     R"lf(01TrueFalse332:>user;12FalseFalse321:system>assistant;23FalseTrue310:user>;)lf"},
    {"loop_else_filter_break",
     R"lf({% for v in [] %}x{% else %}empty{% endfor %}|{% for v in range(10) if v is odd %}{{ v }}{% if v > 5 %}{% break %}{% endif %}{% endfor %}|{% for v in range(5) %}{% if v == 2 %}{% continue %}{% endif %}{{ v }}{% endfor %}|{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|{% for c in 'hé' %}[{{ c }}]{% endfor %})lf",
     R"lf(empty|1357|0134|z=1;a=é;m=[1, 2];|zam|[h][é])lf"},
    {"scoping_and_namespace",
     R"lf({% set a = 1 %}{% for i in range(3) %}{% set a = a + i %}{% endfor %}{{ a }}|{% set ns = namespace(total=0, seen=false) %}{% for i in range(4) %}{% set ns.total = ns.total + i %}{% endfor %}{{ ns.total }}{{ ns.seen }}|{% if true %}{% set b = 5 %}{% endif %}{{ b }}|{% set p, q = [1, 2] %}{{ p }}{{ q }})lf",
     R"lf(1|6False|5|12)lf"},
    {"macros",
     R"lf({% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', '?') }} {{ greet(punct='.', name='c') }}{% macro fact(k) %}{% if k <= 1 %}1{% else %}{{ k * fact(k - 1) | int }}{% endif %}{% endmacro %} {{ fact(5) }} {{ greet('x') is string }})lf",
     R"lf(Hello a! Hello b? Hello c. 120 True)lf"},
    {"set_block",
     R"lf({% set body %}
  {{ x }} items
{% endset %}[{{ body }}])lf",
     R"lf([  7 items
])lf"},
    {"filters_text",
     R"lf({{ s | trim }}|{{ s | trim(' ac') }}|{{ 'MiXed' | upper }}{{ 'MiXed' | lower }}|{{ 'hello world' | capitalize }}|{{ s | replace(',', ';') }}|{{ s | replace(',', ';', 2) }}|{{ 'Grüße' | length }}|{{ x | string }}{{ n | string }}|{{ d | length }}|{{ 'ß' | upper }})lf",
     R"lf(a,b,,c|,b,,|MIXEDmixed|Hello world|  a;b;;c  |  a;b;,c  |5|7None|3|SS)lf"},
    {"filters_lists",
     R"lf({{ [3, 1, 2] | join(', ') }}|{{ messages | map(attribute='role') | join('/') }}|{{ messages | selectattr('role', 'equalto', 'user') | list | length }}|{{ messages | rejectattr('role', 'eq', 'user') | map(attribute='role') | list }}|{{ [1, 2, 3] | first }}{{ [1, 2, 3] | last }}|{{ ['a', 'b'] | map('upper') | list }}|{{ messages | selectattr('tool_calls', 'defined') | list | length }}|{{ d | dictsort }}|{{ d | items | list }}|{{ 'ab' | list }}|{{ [1, 0, 2] | select | list }}{{ [1, 0, 2] | reject('odd') | list }})lf",
     R"lf(3, 1, 2|system/user/assistant|1|['system', 'assistant']|13|['A', 'B']|1|[('a', 'é'), ('m', [1, 2]), ('z', 1)]|[('z', 1), ('a', 'é'), ('m', [1, 2])]|['a', 'b']|[1, 2][0, 2])lf"},
    {"default_filter",
     R"lf({{ missing | default('dflt') }}|{{ '' | default('e', true) }}|{{ '' | default('e') }}|{{ n | default('none?') }}|{{ missing | d(3) }})lf",
     R"lf(dflt|e||None|3)lf"},
    {"tojson",
     R"lf({{ d | tojson }}|{{ messages[2].tool_calls | tojson }}|{{ d | tojson(indent=2) }}|{{ d | tojson(sort_keys=true) }}|{{ d | tojson(separators=(',', ':')) }}|{{ '<a&b>' | tojson }}|{{ 'x\n\t"\u0001' | tojson }}|{{ [] | tojson(indent=2) }}|{{ 1e100 | tojson }})lf",
     R"lf({"z": 1, "a": "é", "m": [1, 2]}|[{"name": "f", "arguments": {"b": 1, "a": [1.5, null, true]}}]|{
  "z": 1,
  "a": "é",
  "m": [
    1,
    2
  ]
}|{"a": "é", "m": [1, 2], "z": 1}|{"z":1,"a":"é","m":[1,2]}|"<a&b>"|"x\n\t\"\u0001"|[]|1e+100)lf"},
    {"tests",
     R"lf({{ x is number }}{{ f is float }}{{ x is integer }}{{ t is boolean }}{{ t is true }}{{ n is false }}{{ n is none }}{{ s is string }}{{ d is mapping }}{{ messages is sequence }}{{ s is iterable }}{{ x is iterable }}{{ missing is defined }}{{ missing is undefined }}{{ x is not none }}{{ x is divisibleby 7 }}{{ x is even }}{{ 'a' is in 'cat' }}{{ greet is callable }}{{ range is callable }})lf",
     R"lf(TrueTrueTrueTrueTrueFalseTrueTrueTrueTrueTrueFalseFalseTrueTrueTrueFalseTrueTrueTrue)lf"},
    {"string_methods",
     R"lf({{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip(' c') }}|{{ s.split(',') }}|{{ s.split() }}|{{ 'a b  c'.split(' ', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ 'file.py'.endswith(('.py', '.txt')) }}{{ 'abc'.startswith('b') }}|{{ 'x</think>y'.split('</think>')[-1] }}|{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}|{{ 'aXa'.replace('a', 'b') }}|{{ 'abcb'.find('b') }}{{ 'abcb'.rfind('b') }}{{ 'abcb'.count('b') }}|{{ 'hello there'.title() }})lf",
     R"lf(a,b,,c|a,b,,c  |  a,b,,|['  a', 'b', '', 'c  ']|['a,b,,c']|['a', 'b  c']|['a,b', 'c']|TrueFalse|y|ABab|bXb|132|Hello There)lf"},
    {"dict_methods",
     R"lf({{ d.get('z') }}{{ d.get('q') }}{{ d.get('q', 'fallback') }}|{{ d.keys() | list }}|{{ d.values() | list }}|{{ dict(a=1, b='x') }}|{{ d['m'] }})lf",
     R"lf(1Nonefallback|['z', 'a', 'm']|[1, 'é', [1, 2]]|{'a': 1, 'b': 'x'}|[1, 2])lf"},
    {"whitespace_control",
     R"lf(A  {%- if t %}  B  {% endif -%}  C
  {% if t %}
    D
  {% endif %}
E {{- ' F ' -}} G
{# comment #}
  {#- c2 -#}  H
{%+ if t %}I{% endif %}
    {%- if t %}J{% endif %}
)lf",
     R"lf(A  B  C
    D
E F G
H
IJ)lf"},
    {"lstrip_trim",
     R"lf(<ul>
    {% for v in [1, 2] %}
        <li>{{ v }}</li>
    {% endfor %}
</ul>
    {{ x }}
  {% if t %}kept{% endif %}  tail
)lf",
     R"lf(<ul>
        <li>1</li>
        <li>2</li>
</ul>
    7
kept  tail)lf"},
    {"strings",
     R"lf({{ 'a' 'b' }}|{{ "it's" }}|{{ 'tab\there' }}|{{ '\u00e9\x41' }}|{{ 'back\\slash' }}|{{ 'keep\d' }})lf",
     R"lf(ab|it's|tab	here|éA|back\slash|keep\d)lf"},
    {"strftime",
     R"lf({{ strftime_now('%Y') | length }})lf",
     R"lf(4)lf"},
    {"special_tokens",
     R"lf({{ bos_token }}{{ eos_token }}{{ add_generation_prompt }}{{ messages | length }})lf",
     R"lf(<s></s>False3)lf"},
};

TEST(ChatTemplate, RendersAsTransformers) {
  for (const Case& c : cases) EXPECT_EQ(render(c.source), c.expected) << c.name;
}

TEST(ChatTemplate, GenerationSpans) {
  const ChatTemplate t = ChatTemplate::parse(
      "{% for m in messages %}<{{ m.role }}>{% if m.role == 'assistant' %}{% generation %}{{ m.content }}!"
      "{% endgeneration %}{% else %}{{ m.content }}{% endif %}\n{% endfor %}",
      "gen.jinja");
  EXPECT_TRUE(t.marks_generation());
  const RenderedChat r = t.render(variables());
  ASSERT_EQ(r.generation.size(), 1u);
  EXPECT_EQ(r.text.substr(r.generation[0].first, r.generation[0].second - r.generation[0].first), "Hi!!");
  EXPECT_FALSE(ChatTemplate::parse("{{ x }}", "plain.jinja").marks_generation());
}

TEST(ChatTemplate, ErrorsNameTheTemplateAndLine) {
  EXPECT_EQ(error_of("a\n{{ raise_exception('bad role') }}"), "test.jinja:2: raise_exception: bad role");
  EXPECT_EQ(error_of("\n\n{% filter upper %}x{% endfilter %}"), "test.jinja:3: the tag {% filter %} is not supported");
  EXPECT_EQ(error_of("{{ x | wordcount }}"), "test.jinja:1: the filter 'wordcount' is not supported");
  EXPECT_EQ(error_of("{{ x is escaped }}"), "test.jinja:1: the test 'escaped' is not supported");
  EXPECT_EQ(error_of("{% if x %}\nno end"), "test.jinja:2: missing {% endif %}: the template ended first");
  EXPECT_EQ(error_of("{{ 'open }}"), "test.jinja:1: unterminated string literal");
  EXPECT_EQ(error_of("{# open"), "test.jinja:1: unterminated comment");
  EXPECT_EQ(error_of("x\n{{ x"), "test.jinja:2: unterminated expression {{ ... }}");
  EXPECT_EQ(error_of("{% endfor %}"), "test.jinja:1: unexpected {% endfor %}");
  EXPECT_EQ(error_of("\n{{ missing.attr }}"), "test.jinja:2: 'missing' is undefined");
  EXPECT_EQ(error_of("{{ 1 + 'a' }}"), "test.jinja:1: unsupported operand type(s) for +: 'int' and 'str'");
  EXPECT_EQ(error_of("{{ x() }}"), "test.jinja:1: 'int' object is not callable");
  EXPECT_EQ(error_of("{% for a in x %}{% endfor %}"), "test.jinja:1: 'int' object is not iterable");
  EXPECT_EQ(error_of("{% set x.a = 1 %}"), "test.jinja:1: cannot assign attribute on non-namespace object");
  EXPECT_EQ(error_of("{{ s.zfill(3) }}"), "test.jinja:1: 'zfill' is undefined");
  EXPECT_EQ(error_of("{% macro m(a) %}\n{{ a + 1 }}{% endmacro %}{{ m('s') }}"),
            "test.jinja:2: unsupported operand type(s) for +: 'str' and 'int'");
  EXPECT_EQ(error_of("{% for x in y recursive %}{% endfor %}"), "test.jinja:1: recursive for loops are not supported");
  EXPECT_EQ(error_of("{{ 1 / 0 }}"), "test.jinja:1: division by zero");
}

TEST(ChatTemplate, Limits) {
  EXPECT_EQ(error_of("{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}"),
            "test.jinja:1: the template exceeds its limit of loop iterations");
  EXPECT_EQ(error_of("{{ range(100001) }}"), "test.jinja:1: range too big, maximum size for range is 100000");
  EXPECT_EQ(error_of("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"),
            "test.jinja:1: macro calls nest deeper than the limit");
  ChatTemplateLimits small;
  small.max_output_bytes = 1000;
  EXPECT_EQ(error_of("{% for i in range(2000) %}x{% endfor %}", small),
            "test.jinja:1: the output exceeds the template's size limit");
  EXPECT_EQ(error_of("{{ 'ab' * 100000 }}", small), "test.jinja:1: a string exceeds the template's size limit");
  EXPECT_EQ(error_of("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}"),
            "test.jinja:1: values nest deeper than 256 levels");
  // Extreme operands end quickly, without overflow.
  EXPECT_EQ(render("{{ ('' * 1000000000000) | length }}{{ ([] * 1000000000000) | length }}"
                   "{{ 'abc'[::9223372036854775807] }}{{ 'abc'[-9223372036854775807:] }}"),
            "00aabc");
  EXPECT_EQ(error_of("{{ range(-9223372036854775807, 9223372036854775807) }}"),
            "test.jinja:1: range too big, maximum size for range is 100000");
  EXPECT_EQ(error_of("{{ ['x'] * 100000000000 }}"), "test.jinja:1: the template exceeds its limit of loop iterations");
  EXPECT_EQ(error_of("{% set ns = namespace(s='x' * 1000000) %}{% for i in range(100000) %}"
                     "{% if 'y' in ns.s %}{% endif %}{% endfor %}"),
            "test.jinja:1: the template processes more text than its limit");
  // A namespace holding itself renders and is freed (no cycle left behind).
  EXPECT_EQ(render("{% set ns = namespace(n=1) %}{% set ns.self = ns %}{{ ns.self.self.n }}{{ [ns] | length }}"), "11");
  EXPECT_EQ(error_of("{{ " + std::string(300, '(') + "1" + std::string(300, ')') + " }}"),
            "test.jinja:1: the template nests deeper than 200 levels");
}

TEST(ChatTemplate, ChatVariablesAsTransformersPassesThem) {
  const ojson messages = ojson::parse(
      R"([{"role": "user", "content": "q", "name": null}, {"role": "assistant", "reasoning": "r", "content": "a"}])");
  const ojson config = ojson::parse(R"({"bos_token": {"content": "<s>"}, "eos_token": "</s>", "pad_token": null})");
  const ojson v = chat_variables(messages, nullptr, nullptr, true, config, "conv.json");
  EXPECT_EQ(v.dump(), R"({"bos_token":"<s>","eos_token":"</s>","messages":[{"role":"user","content":"q"},)"
                      R"({"thinking":"r","role":"assistant","reasoning":"r","content":"a","reasoning_content":"r"}],)"
                      R"("tools":null,"documents":null,"add_generation_prompt":true})");
  EXPECT_THROW(chat_variables(ojson::array(), nullptr, nullptr, false, config, "c"), Error);
  EXPECT_THROW(chat_variables(ojson::parse("[1]"), nullptr, nullptr, false, config, "c"), Error);
}

}  // namespace
}  // namespace lorafast

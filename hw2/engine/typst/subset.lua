-- What pandoc's typst writer lacks for Quarto's cross-references (hw2's renderer runs this filter):
--   @fig-x / @tbl-x / @eq-x / @sec-x  ->  #ref(<x>, supplement: [Figure]) as Quarto emits;
--   a table caption ending in {#tbl-x}  ->  a labelled table;
--   $$ ... $$ {#eq-x}                    ->  a numbered, labelled equation.
local supplements = {fig = "Figure", tbl = "Table", eq = "Equation", sec = "Section"}

function Cite(cite)
  -- `@sec-a [@key]` parses as one citation group: cross-references become refs, the rest stays a citation.
  local refs, others = {}, pandoc.List()
  for _, c in ipairs(cite.citations) do
    local prefix = c.id:match("^(%a+)%-")
    if prefix and supplements[prefix] then
      table.insert(refs, "#ref(<" .. c.id .. ">, supplement: [" .. supplements[prefix] .. "])")
    else
      others:insert(c)
    end
  end
  if #refs == 0 then return nil end
  local out = pandoc.List({pandoc.RawInline("typst", table.concat(refs, ", ") .. ";")})
  if #others > 0 then
    for _, c in ipairs(others) do c.mode = pandoc.NormalCitation end
    out:insert(pandoc.Space())
    out:insert(pandoc.Cite({}, others))
  end
  return out
end

-- An uncaptioned table is not a float in Quarto: no figure, no number.
local function bare_table(tbl)
  local typ = pandoc.write(pandoc.Pandoc({tbl}), "typst")
  typ = typ:gsub("^%s*#figure%(%s*align%(center%)%[", "#align(center)[")
  typ = typ:gsub("%]%s*,%s*kind: table%s*%)%s*$", "]")
  return pandoc.RawBlock("typst", typ)
end

function Table(tbl)
  local blocks = tbl.caption.long
  if #blocks == 0 then
    if tbl.identifier == "" then return bare_table(tbl) end
    return nil
  end
  local inlines = blocks[#blocks].content
  local last = inlines[#inlines]
  local id = last and last.t == "Str" and last.text:match("^{#(tbl%-[%w%-_]+)}$")
  if not id then return nil end
  inlines:remove(#inlines)
  while #inlines > 0 and inlines[#inlines].t == "Space" do inlines:remove(#inlines) end
  tbl.identifier = id
  return tbl
end

local function label_equations(inlines)
  local out = pandoc.List()
  local i = 1
  while i <= #inlines do
    local el = inlines[i]
    local j = i + 1
    if inlines[j] and inlines[j].t == "Space" then j = j + 1 end
    local nxt = inlines[j]
    local id = el.t == "Math" and el.mathtype == "DisplayMath" and nxt and nxt.t == "Str"
               and nxt.text:match("^{#(eq%-[%w%-_]+)}$")
    if id then
      out:insert(pandoc.RawInline("typst", '#[#set math.equation(numbering: "(1)"); '))
      out:insert(el)
      out:insert(pandoc.RawInline("typst", " <" .. id .. ">]"))
      i = j + 1
    else
      out:insert(el)
      i = i + 1
    end
  end
  return out
end

function Para(para)
  para.content = label_equations(para.content)
  return para
end

function Plain(plain)
  plain.content = label_equations(plain.content)
  return plain
end

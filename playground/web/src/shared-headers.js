// GraphiQL keeps one headers editor per tab. The token pasted after signIn
// should follow the user from tab to tab, so this component (rendered inside
// GraphiQL, where the editor context is available) remembers what the user
// typed in the headers editor and puts it back whenever another tab opens.
import { useEffect, useRef } from 'react';
import { useEditorContext } from '@graphiql/react';

export function SharedHeaders() {
  const { headerEditor, activeTabIndex } = useEditorContext({ nonNull: true });
  const typed = useRef(null);

  useEffect(() => {
    if (!headerEditor) return undefined;
    const onChange = (_cm, change) => {
      // Only the user's edits: tab switches replace the contents with
      // origin "setValue".
      if (change && change.origin !== 'setValue') typed.current = headerEditor.getValue();
    };
    headerEditor.on('change', onChange);
    return () => headerEditor.off('change', onChange);
  }, [headerEditor]);

  useEffect(() => {
    if (!headerEditor || typed.current === null) return;
    if (headerEditor.getValue() !== typed.current) headerEditor.setValue(typed.current);
  }, [headerEditor, activeTabIndex]);

  return null;
}
